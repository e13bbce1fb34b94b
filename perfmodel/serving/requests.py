"""Per-request state and timestamps of a simulation (a struct of numpy arrays)."""

from __future__ import annotations

import numpy as np

from .workload import Workload

# inter-token gap histogram: log bins, 0.5 % wide, 10 us .. 1000 s
TBT_BINS = np.logspace(-5, 3, 8 * 460 + 1)


class Requests:
    """What happened to every request: when its instance's engine core got it, when it was
    first scheduled, produced its first token and finished; how many tokens it has generated (kept across preemption and KV transfer);
    how often it was preempted."""

    def __init__(self, workload: Workload):
        n = len(workload)
        # a closed loop writes its arrivals as it runs: keep the workload's array unchanged
        self.arrival = workload.arrival.copy() if workload.closed else workload.arrival
        self.prompt = workload.prompt
        self.output = workload.output
        self.gen = np.zeros(n, np.int64)  # tokens generated so far
        # reached its instance's engine core: send + the engine's request-path host time
        # (sim READY; vLLM's API server tokenising the prompt); NaN: not sent yet
        self.ready = np.full(n, np.nan)
        self.start = np.full(n, np.nan)  # first admitted to a batch
        self.first = np.full(n, np.nan)  # first token out
        self.finish = np.full(n, np.nan)  # last token out
        self.preemptions = np.zeros(n, np.int64)
        # closed loop: the request whose end made its client send this one (-1: first wave,
        # or pre-set arrivals)
        self.sent_after = np.full(n, -1, np.int64)
        self._gaps: list[np.ndarray] = []  # inter-token gaps, binned at the end
        self._weights: list[float] = []  # each gap array's weight (tokens per gap)
        self._weighted: list[tuple[np.ndarray, np.ndarray]] = []  # (gaps, per-gap weights)
        # when tokens came out: (times, tokens at each) of the counted requests, for the
        # peak output token throughput over 1-second buckets (bench.peak_output_rate)
        self._tokens: list[tuple[np.ndarray, np.ndarray | float]] = []
        # requests whose gaps count (warm-up ones do not); None: all of them
        self.counted: np.ndarray | None = None
        if workload.warmup:
            self.counted = np.arange(n) >= workload.warmup

    def __len__(self) -> int:
        return int(self.arrival.size)

    def add_gaps(self, gaps: np.ndarray, weights: np.ndarray | float = 1.0) -> None:
        """Record inter-token gaps (seconds; NaN = no previous token), each ``weights`` times."""
        if isinstance(weights, np.ndarray):
            self._weighted.append((gaps, weights))
        else:
            self._gaps.append(gaps)
            self._weights.append(weights)

    def slot_gaps(self, gaps: np.ndarray, rids: np.ndarray) -> None:
        """One gap per request ``rids[i]`` (NaN: none); warm-up requests' gaps do not count."""
        if self.counted is None:
            self.add_gaps(gaps)
        else:
            self.add_gaps(gaps, self.counted[rids].astype(float))

    def shared_gaps(self, gaps: np.ndarray, rids: np.ndarray) -> None:
        """Gaps that every request of ``rids`` saw (a decode run of that batch)."""
        k = rids.size if self.counted is None else int(np.count_nonzero(self.counted[rids]))
        if k:
            self.add_gaps(gaps, k)

    def _weight(self, rids: np.ndarray) -> int:
        return rids.size if self.counted is None else int(np.count_nonzero(self.counted[rids]))

    def tokens_at(self, times: np.ndarray | float, rids: np.ndarray) -> None:
        """Every request of ``rids`` emitted one token at each of ``times``."""
        k = self._weight(rids)
        if k:
            self._tokens.append((np.atleast_1d(np.asarray(times, float)), float(k)))

    def tokens_weighted(self, times: np.ndarray, counts: np.ndarray) -> None:
        """``counts[j]`` counted tokens came out at ``times[j]``."""
        self._tokens.append((np.asarray(times, float), np.asarray(counts, float)))

    def token_times(self) -> tuple[np.ndarray, np.ndarray]:
        """All recorded token times and their counts."""
        if not self._tokens:
            return np.zeros(0), np.zeros(0)
        t = np.concatenate([a for a, _ in self._tokens])
        w = np.concatenate([np.broadcast_to(np.asarray(c, float), a.shape)
                            for a, c in self._tokens])
        return t, w

    def tbt_max(self) -> float:
        """The largest inter-token gap (the geometric centre of its histogram bin)."""
        counts = self.tbt_histogram()
        nz = np.flatnonzero(counts)
        if nz.size == 0:
            return float("nan")
        i = int(nz[-1])
        edges = np.concatenate([[TBT_BINS[0]], TBT_BINS, [TBT_BINS[-1]]])
        return float(np.sqrt(edges[i] * edges[i + 1]))

    def tbt_histogram(self) -> np.ndarray:
        counts = np.zeros(TBT_BINS.size + 1)
        if self._gaps:
            g = np.concatenate(self._gaps)
            w = np.repeat(np.asarray(self._weights, float), [a.size for a in self._gaps])
            self._weighted.append((g, w))
            self._gaps, self._weights = [], []
        for g, w in self._weighted:
            ok = ~np.isnan(g)
            idx = np.searchsorted(TBT_BINS, g[ok])
            counts += np.bincount(idx, weights=np.asarray(w, float)[ok], minlength=counts.size)
        return counts

    def tbt_percentiles(self, qs=(50, 90, 99)) -> dict[int, float]:
        counts = self.tbt_histogram()
        total = counts.sum()
        if total == 0:
            return {q: float("nan") for q in qs}
        cdf = np.cumsum(counts) / total
        out = {}
        edges = np.concatenate([[TBT_BINS[0]], TBT_BINS, [TBT_BINS[-1]]])
        for q in qs:
            i = int(np.searchsorted(cdf, q / 100.0))
            out[q] = float(np.sqrt(edges[i] * edges[i + 1]))  # geometric bin centre
        return out
