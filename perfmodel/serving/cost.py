"""The time of one serving iteration, from the inference model's own operators, made fast.

An iteration of an iteration-level scheduler (Orca, Yu et al. OSDI 2022; vLLM, Kwon et al.
SOSP 2023) runs some prefill chunks and some decode sequences through the model together.
Its time splits the way the operators do (perfmodel.ops):

* the GEMMs, norms, activations, embedding and TP all-reduces see one flat batch of all the
  iteration's tokens, so they are a function F(T) of the token count T;
* the LM head runs only for sequences that sample a token (decodes and prompts whose last
  chunk ends here): H(L);
* attention is per sequence: a decode at context c reads its own KV cache, W_d(c + 1); a
  prefill chunk of q tokens after a prefix attends q x kv pairs, W_p(q, kv); a kernel launch
  cost is paid once per attention kind present (one batched kernel each).

Like Vidur (Agrawal et al. MLSys 2024, arXiv 2405.05465, Sec. 4), which profiles operators
once and predicts iteration times by interpolation, the model evaluates the *same* operator
list as ``perfmodel.inference`` (``inference.forward_pass`` -> ``ops`` + ``roofline.op_times``)
on grids of token counts and contexts (numpy, many points per call) and interpolates during
the simulation. A grid point is evaluated when a lookup first reaches it (token tables by
blocks, ``TokenTable``; decode attention by rows x the kv columns a workload's contexts span,
``prepare``): a configuration that is never simulated reads a few dozen points of ~10^5-10^6,
and every operator is timed per point, so each value is the one the whole grid gives.
Pipeline parallelism follows ``inference``: the iteration's sequences split into min(pp, n)
micro-batches that fill the stages, and the iteration takes one pass of one micro-batch
through all pp stages. With an uneven layer split (``plan.pp_layers``: the scenario's
pipeline_layers or the engine's default split) the largest stage paces the micro-batches as
in ``inference``'s decode step
(``pipeline.pipelined_step_time`` with ``pipeline.stage_excess``: its extra layers' share of
the pass, embedding, LM head and stage hops apart). Stages and TP groups may span nodes: the
operators' collectives and hops are ``forward_pass``'s, over the system's inter-node network
where the instance's GPUs leave a node.

Attention data parallelism (``parallelism.attention_dp``, perfmodel/moe_parallel.py): an
instance of tp x attention_dp x pp GPUs whose attention_dp groups each serve their own
requests, with their own KV cache, while its MoE layers see the tokens of all groups. The
engine spreads requests over the groups in turn (SGLang ``--load-balance-method`` default
``round_robin``, sgl-project/sglang python/sglang/srt/server_args.py ``load_balance_method``,
dispatched by managers/data_parallel_controller.py), so the simulator keeps one queue and one
KV pool per instance (attention_dp groups' pools together). The groups run each MoE layer
together, so an iteration lasts as long as its busiest group: F splits into the routed
experts' grouped GEMMs E(T), which see all T tokens of the iteration, and the rest G (each
group's attention-side operators, its all-to-all sends, the TP collectives), which the
busiest group's tokens t* pace: F = G(attention_dp x t*) + E(T), G and E tabulated like F at
instance token counts (a group's share of T is T / attention_dp). The iteration's decodes
spread over the groups in turn (ceil(n / attention_dp) on the busiest) and its prefill chunks
too (chunk j to group j mod attention_dp); the busiest group's attention work is its own
sequences'. With balanced groups (n a multiple of attention_dp, equal chunks) this is
``inference.forward_pass`` of a batch of n over the instance (n / attention_dp per group);
a lone request runs on one group while the experts see its tokens alone. The MoE all-to-all
kernels depend on the phase (DeepEP normal for prefill, low latency for decode;
``moe_parallel.resolved_mode``), so a decode-only iteration of such an instance reads its
dense part from a table of decode passes, F_d(T) = G_d + E_d.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace

import numpy as np

from .. import ops as O
from ..inference import forward_pass, inference
from ..memory import (
    kv_fixed_bytes_per_sequence,
    kv_growth_bytes_per_token,
    memory_capacity_bytes,
    overhead_bytes,
)
from ..pipeline import pipelined_step_time, stage_excess
from ..plan import InferPlan
from ..profile import CalibrationProfile
from ..specs.model import ModelSpec
from ..specs.system import System
from .limits import RequestLimit

DENSE_INTEGERS = 2048  # token counts evaluated exactly up to here, then geometric
POINTS_PER_OCTAVE = 64  # geometric spacing beyond (~1.1 %): linear interpolation error << 1 %
KNOTS = 9  # per-run samples of a decode run's attention work (linear in between)
_KNOT_FRACTIONS = np.arange(KNOTS)


def _grid(top: float, dense: int = DENSE_INTEGERS, per_octave: int = POINTS_PER_OCTAVE
          ) -> np.ndarray:
    """1, 2, ..., dense, then geometric up to ``top`` (always included)."""
    top = max(float(top), 2.0)
    ints = np.arange(1.0, min(dense, top) + 1.0)
    if top <= dense:
        return np.unique(np.append(ints, top))
    octaves = np.log2(top / dense)
    geo = dense * np.exp2(np.linspace(0.0, octaves, max(int(np.ceil(octaves * per_octave)), 1)
                                      + 1))
    geo[-1] = top  # exp2(log2(top / dense)) * dense can miss top by an ulp: no twin point
    return np.unique(np.concatenate([ints, geo, [top]]))


def _is_attention(op: O.Op) -> bool:
    return op.cls == O.ATTENTION or op.attention_core


def _is_routed_expert(op: O.Op) -> bool:
    """The routed experts' operators (grouped GEMMs and their activation): with attention DP
    they see the tokens of every group (E(T) above)."""
    return op.name.startswith("moe.expert.")


def _is_lm_head(op: O.Op) -> bool:
    """The LM head (final norm, head GEMM, sampling) runs only for sequences that sample a
    token (H(L) above)."""
    return op.block == "head"


@dataclass(frozen=True)
class KVCapacity:
    """Paged KV cache of one instance (per GPU; every GPU of the instance holds the same
    share): bytes per token, block size and the number of blocks that fit in the memory left
    after weights, workspace and the CUDA context (vLLM sizes its block pool the same way:
    profile the peak, give the rest to blocks; Kwon et al. 2023 Sec. 4.1)."""

    bytes_per_token: float
    block_tokens: int
    num_blocks: int
    memory: dict[str, float]  # per GPU, by kind, with the pool as 'kv_cache'
    # a named engine that caps a request to a pool below max_model_len: its limit
    # (serving/limits.py; None: no cap)
    limit: RequestLimit | None = None

    @property
    def tokens(self) -> int:
        return self.num_blocks * self.block_tokens


TABLE_BLOCK = 64  # token-grid points evaluated together when a lookup first reaches them


class TokenTable:
    """Columns of one kind of pass over a token grid, evaluated ``TABLE_BLOCK`` points at a
    time when a lookup first reaches them: ``evaluate(points)`` returns each column at those
    points. Every operator is timed per point, so a block holds exactly the values the whole
    grid in one call would (a simulation reads a few hundred of its thousands of points; a
    configuration that is never simulated, a dozen)."""

    def __init__(self, grid: np.ndarray, evaluate, names: tuple[str, ...], exact: int):
        self.grid, self._grid_list = grid, grid.tolist()
        self._evaluate = evaluate
        self.values = {k: np.full(grid.size, np.nan) for k in names}
        # plain-Python copies of the dense integer part for scalar lookups in the event loop
        # (numpy calls cost ~us each); None until evaluated
        self.exact = {k: [None] * exact for k in names}
        self._done = [False] * -(-grid.size // TABLE_BLOCK)

    def column(self, name: str) -> Column:
        return Column(self, self.values[name], self.exact[name])

    def fill(self, lo: int, hi: int) -> None:
        """Evaluate the blocks holding grid points lo..hi (those not evaluated yet)."""
        for blk in range(lo // TABLE_BLOCK, hi // TABLE_BLOCK + 1):
            if self._done[blk]:
                continue
            a, b = blk * TABLE_BLOCK, min((blk + 1) * TABLE_BLOCK, self.grid.size)
            for name, v in self._evaluate(self.grid[a:b]).items():
                v = np.broadcast_to(np.asarray(v, float), (b - a,))
                self.values[name][a:b] = v
                exact = self.exact[name]
                if a < len(exact):
                    exact[a:min(b, len(exact))] = v[:len(exact) - a].tolist()
            self._done[blk] = True

    def around(self, x: float) -> None:
        """Evaluate the grid points ``np.interp`` reads at ``x`` (its neighbours, and the next
        one when x is a grid point; the end points beyond the grid)."""
        j = bisect_left(self._grid_list, x)
        n = self.grid.size
        self.fill(min(max(j - 1, 0), n - 1), min(j + 1, n - 1))


@dataclass(frozen=True)
class Column:
    """One column of a ``TokenTable``: ``values`` over its grid, ``exact`` the dense integer
    part as a list (None where not evaluated yet)."""

    table: TokenTable
    values: np.ndarray
    exact: list

    def interp(self, x: float) -> float:
        self.table.around(x)
        return float(np.interp(x, self.table.grid, self.values))


class IterationCostModel:
    """Iteration time of one model instance (tp x pp GPUs) for any mix of prefill chunks and
    decode sequences. Build once per (model, device, plan); query during the simulation.

    The one home of the serving iteration time: ``iteration_time`` (any mix, vectorised),
    ``step_time`` (the simulator's scalar fast path) and ``decode_run_times`` (k decode
    iterations of an unchanged batch) all add the same terms: F(T) + H(L) of one micro-batch,
    the attention work over micro-batches, and one launch per attention kind present."""

    def __init__(self, model: ModelSpec, system: System, plan: InferPlan,
                 profile: CalibrationProfile, max_tokens: int, max_context: int,
                 max_batch: int):
        self.model, self.system, self.plan, self.profile = model, system, plan, profile
        self.pp = int(plan.pp)
        self.groups = int(np.max(plan.attention_dp))  # attention DP groups of the instance
        base = replace(plan, replicas=1, batch=1)
        self._base = base
        self._dense_tables(base, max(max_tokens, max_batch))
        self._decode_tables(base, max_context, max_batch)
        self._prefill_tables(base, max_tokens, max_context)

    def _pass(self, plan: InferPlan, b, q_len, kv_len, pairs, phase: str, logits):
        return forward_pass(self.model, self.system, plan, self.profile, b, q_len, kv_len,
                            pairs, phase, logits, True)

    def _dense_tables(self, base: InferPlan, top: float) -> None:
        """F(T), H(L): every operator except attention, on a grid of token counts (evaluated
        a block at a time as lookups reach it: ``TokenTable``)."""
        self.t_grid = _grid(top)
        # an uneven split: the pass's parts that are not layers (embedding, stage hops; the
        # LM head is H), which the largest stage's extra layers do not scale
        self.pp_layers = base.pp_layers
        dense = int(min(DENSE_INTEGERS, self.t_grid[-1]))
        names = ("f", "h", "x", "hop") + (("e",) if self.groups > 1 else ())
        table = TokenTable(self.t_grid, self._dense_points, names, dense)
        self._f, self._h, self._x, self._hop = (table.column(k) for k in names[:4])
        self._fd = self._ed = self._e = None
        if self.groups > 1:  # E(T), and G = F - E (module docstring)
            self._e = table.column("e")
        if self.groups > 1 and self.model.moe is not None:
            decode = TokenTable(self.t_grid, self._decode_dense_points, ("fd", "ed"), dense)
            self._fd, self._ed = decode.column("fd"), decode.column("ed")

    def _dense_points(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """F, H, the non-layer part X, the stage hops and E at token counts ``t``."""
        base = self._base
        res = self._pass(base, 1.0, t, t, t, "prefill", t)
        f_stage = np.zeros_like(t)
        h_stage = np.zeros_like(t)
        e_stage = np.zeros_like(t)
        embed_stage = np.zeros_like(t)
        for i, op in enumerate(res.op_times.ops):
            w = np.asarray(op.count) * res.op_times.time[i]
            if _is_attention(op):
                continue
            if _is_lm_head(op):
                h_stage = h_stage + w
            else:
                f_stage = f_stage + w
                if _is_routed_expert(op):
                    e_stage = e_stage + w
                if op.block == "embed":
                    embed_stage = embed_stage + w
        out = {"x": self.pp * embed_stage + res.pp_comm,
               "hop": np.asarray(res.pp_comm, float) * np.ones_like(t),
               # res.tp_comm, res.ep_comm (MoE all-to-alls or DP gathers; 0 without attention
               # DP) and res.pp_comm are already the whole pass (x pp and (pp-1) hops)
               "f": self.pp * f_stage + res.tp_comm + res.ep_comm + res.pp_comm,
               "h": self.pp * h_stage}
        if self.groups > 1:
            out["e"] = self.pp * e_stage
        return out

    def _decode_dense_points(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """F_d(T): the dense part of a decode pass of T sequences (module docstring): the
        whole pass (two-micro-batch overlap included) less its attention and LM head, so that
        F_d(T) + H(T) + attention = ``forward_pass`` of the decode step; E_d(T) its experts."""
        res = self._pass(self._base, t, 1.0, 1.0, 1.0, "decode", t)
        drop = np.zeros_like(t)
        experts = np.zeros_like(t)
        for i, op in enumerate(res.op_times.ops):
            w = np.asarray(op.count) * res.op_times.time[i]
            if _is_attention(op) or _is_lm_head(op):
                drop = drop + w
            elif _is_routed_expert(op):
                experts = experts + w
        return {"fd": np.asarray(res.time, float) - self.pp * drop, "ed": self.pp * experts}

    def _decode_tables(self, base: InferPlan, max_context: int, max_batch: int) -> None:
        """W_d(b, kv): one decode sequence's attention work over all layers (launch cost
        apart) when b sequences share the batched decode kernel: the kernel's efficiency
        grows with its parallel streams (ops.attention_curve_point)."""
        self.kv_grid = _grid(max_context + 2, dense=512)
        self.db_grid = np.unique(np.concatenate([_grid(max(max_batch, 2), dense=16),
                                                 _grid(16.0, dense=1, per_octave=64)]))
        self._ldb = np.log(self.db_grid).tolist()
        self._kv_list = self.kv_grid.tolist()
        # evaluated when a lookup first needs them (``_decode_fill``; NaN until then): the
        # rows done so far, each over one range of kv columns (inclusive; empty at first)
        self.wd_values = np.full((self.db_grid.size, self.kv_grid.size), np.nan)
        self._wd_rows = [False] * self.db_grid.size
        self._wd_cols = (0, -1)
        self._decode_launch: float | None = None

    @property
    def decode_launch(self) -> float:
        """The fixed cost of one batched decode attention call (the same in every pass)."""
        if self._decode_launch is None:
            self._decode_pass([0], 0, 0)
        return self._decode_launch

    def _decode_pass(self, rows: list[int], lo: int, hi: int) -> np.ndarray:
        """W_d on ``rows`` x kv columns lo..hi, in one pass. Every operator is timed per
        point, so each value is exactly what evaluating the whole grid in one call gives."""
        kv = self.kv_grid[None, lo:hi + 1]
        bb = self.db_grid[rows][:, None]
        dec = self._pass(self._base, bb, 1.0, kv, kv, "decode", bb)
        work, self._decode_launch = self._attention(dec, "decode")
        return np.broadcast_to(work, (bb.size, kv.size)) / bb

    def _decode_fill(self, rows, lo: int, hi: int) -> None:
        """Evaluate W_d on ``rows`` x kv columns lo..hi: a wider column range is first
        evaluated on the rows done so far (every row done covers the same range), then the
        new rows over the whole range."""
        lo, hi = max(lo, 0), min(hi, self.kv_grid.size - 1)
        c_lo, c_hi = self._wd_cols
        if c_hi >= c_lo:
            done = [r for r, ok in enumerate(self._wd_rows) if ok]
            for a, b in ((lo, c_lo - 1), (c_hi + 1, hi)):
                if done and b >= a:
                    self.wd_values[np.ix_(done, range(a, b + 1))] = self._decode_pass(done, a, b)
            lo, hi = min(lo, c_lo), max(hi, c_hi)
        self._wd_cols = (lo, hi)
        todo = sorted({int(r) for r in rows if not self._wd_rows[r]})
        if todo:
            self.wd_values[np.ix_(todo, range(lo, hi + 1))] = self._decode_pass(todo, lo, hi)
            for r in todo:
                self._wd_rows[r] = True

    def _kv_columns(self, kv_min: float, kv_max: float) -> tuple[int, int]:
        """The kv columns ``np.interp`` may read for contexts in [kv_min, kv_max] (the grid
        points around each end, and the next one)."""
        n = len(self._kv_list)
        return (min(max(bisect_right(self._kv_list, kv_min) - 1, 0), n - 1),
                min(bisect_left(self._kv_list, kv_max) + 1, n - 1))

    def prepare(self, kv_min: float = 0.0, kv_max: float = math.inf) -> None:
        """Evaluate every row of W_d over the contexts [kv_min, kv_max] (default: all) in one
        pass: a simulation visits most batch sizes, at the contexts of its workload."""
        self._decode_fill(range(self.db_grid.size), *self._kv_columns(kv_min, kv_max))

    def prepare_decode(self, counts, kv: float) -> None:
        """Evaluate the W_d rows that decode-only iterations of ``counts`` sequences at ``kv``
        positions read, in one pass (the frontier's and the throughput estimate's batches)."""
        rows = []
        for n in counts:
            busiest, _, share = self._busiest([], int(n))
            i = self._decode_row(self._kernel(int(n), self.micro(n), busiest, share))
            rows += [i, i + 1]
        self._decode_fill(rows, *self._kv_columns(kv, kv))

    @staticmethod
    def _kernel(nd: int, m: int, busiest, share: float) -> float:
        """Sequences in one batched decode kernel of an iteration with ``nd`` decodes in ``m``
        micro-batches (x the busiest attention-DP group's share: ``_busiest``)."""
        return nd / m if busiest is None else share * nd / m

    def _decode_row(self, batch: float) -> int:
        """The W_d row below a decode kernel of ``batch`` sequences (``decode_work``)."""
        lb = math.log(max(batch, 1.0))
        return min(max(bisect_right(self._ldb, lb) - 1, 0), len(self._ldb) - 2)

    def _prefill_tables(self, base: InferPlan, max_tokens: int, max_context: int) -> None:
        """W_p(q, kv): one prefill chunk, on a (log q) x (log kv/q) grid."""
        q_top = max(min(max_tokens, max_context), 2)  # a chunk never exceeds its context
        self.lq = np.log(_grid(q_top, dense=16, per_octave=16))
        self.lr = np.log(_grid(max(max_context / 1.0, 2.0), dense=2, per_octave=16))
        qq = np.exp(self.lq)[:, None]
        kk = qq * np.exp(self.lr)[None, :]
        pre = self._pass(base, 1.0, qq, kk, O.attention_pairs(qq, kk), "prefill", 1.0)
        wp, self.prefill_launch = self._attention(pre, "prefill")
        self.lwp = np.log(np.maximum(wp, 1e-30))
        self._lq_list, self._lr_list = self.lq.tolist(), self.lr.tolist()
        self._lwp_list = self.lwp.tolist()

    def _attention(self, res, curve: str) -> tuple[np.ndarray, float]:
        """(attention work of a whole pass, fixed cost of one batched call: the kernel
        overhead plus the attention kernel's own fixed time of the profile)."""
        oh = self.profile.kernel_overhead_s
        fixed = oh + self.profile.attention_overhead_s.get(curve, 0.0)
        work, launches = 0.0, 0.0
        for i, op in enumerate(res.op_times.ops):
            if not _is_attention(op):
                continue
            count = float(np.max(op.count))
            per_call = fixed if op.cls == O.ATTENTION else oh
            work = work + count * (res.op_times.time[i] - per_call)
            launches += count * per_call
        return self.pp * np.asarray(work), self.pp * launches

    # ---- table lookups -----------------------------------------------------------------------
    def dense(self, tokens: float, logits: float, decode_only: bool = False,
              busiest: float | None = None) -> float:
        """F(T) + H(L) for one micro-batch; F_d(T) for a decode-only iteration of an
        attention-DP MoE instance. ``busiest``: with attention DP, the tokens of the busiest
        group, whose share of the instance paces G and H: G(groups x busiest) + E(T) + H(groups x
        busiest) (module docstring)."""
        f = self._fd if decode_only and self._fd is not None else self._f
        at = self._at
        if busiest is None or self.groups == 1:
            return at(tokens, f) + at(logits, self._h)
        e = self._ed if f is self._fd else self._e
        wide = self.groups * busiest
        return (at(wide, f) - at(wide, e) + at(tokens, e)
                + at(min(wide, max(logits, 1.0) * self.groups), self._h))

    def group_of(self, rid):
        """The attention-DP group a request runs on (an int, or an array of them for an array
        of ids): the engine's data-parallel controller sends requests to the groups in turn
        (SGLang ``--load-balance-method`` default ``round_robin``, module docstring), so
        request ids in arrival order go to rid mod groups."""
        return rid % self.groups

    def _busiest(self, chunks_q, nd: int, chunk_groups=None, decode_groups=None
                 ) -> tuple[float | None, list[int], float]:
        """With attention DP: (tokens of the busiest group, the chunks it runs, its share of
        the decodes over their mean share). Without explicit groups the decodes spread in
        turn and chunk j goes to group j mod groups (module docstring); ``chunk_groups`` /
        ``decode_groups`` (the group of each chunk / decoding sequence) place them where
        the engine runs them. (None, [], 1) without attention DP."""
        g = self.groups
        if g == 1:
            return None, [], 1.0
        per = [0.0] * g
        if chunk_groups is None:
            chunk_groups = [j % g for j in range(len(chunks_q))]
        for grp, q in zip(chunk_groups, chunks_q, strict=True):
            per[grp] += q
        if decode_groups is None:
            decs = [-(-nd // g)] * g
        else:
            decs = [0] * g
            for grp in decode_groups:
                decs[grp] += 1
        top = max(range(g), key=lambda i: per[i] + decs[i])
        mine = [j for j, grp in enumerate(chunk_groups) if grp == top]
        return per[top] + decs[top], mine, (decs[top] * g / nd if nd else 1.0)

    @staticmethod
    def _at(x: float, col: Column) -> float:
        """``col`` at ``x`` tokens: exact at an integer of the grid's dense part, else linear
        between grid points (evaluating the block(s) it needs the first time)."""
        i = int(x)
        exact = col.exact
        if i == x and 1 <= i <= len(exact):
            v = exact[i - 1]
            if v is None:
                col.table.fill(i - 1, i - 1)
                v = exact[i - 1]
            return v
        return col.interp(x)

    def prefill_one(self, q: float, kv: float) -> float:
        """``prefill_work`` for one chunk, in plain Python (same interpolation)."""
        lq = math.log(q)
        lr = math.log(max(kv / q, 1.0))
        lqs, lrs, g = self._lq_list, self._lr_list, self._lwp_list
        i = min(max(bisect_right(lqs, lq) - 1, 0), len(lqs) - 2)
        j = min(max(bisect_right(lrs, lr) - 1, 0), len(lrs) - 2)
        u = min(max((lq - lqs[i]) / (lqs[i + 1] - lqs[i]), 0.0), 1.0)
        v = min(max((lr - lrs[j]) / (lrs[j + 1] - lrs[j]), 0.0), 1.0)
        return math.exp((1 - u) * (1 - v) * g[i][j] + u * (1 - v) * g[i + 1][j]
                        + (1 - u) * v * g[i][j + 1] + u * v * g[i + 1][j + 1])

    def decode_work(self, kv: np.ndarray, batch: float = 1.0) -> np.ndarray:
        """W_d per sequence attending ``kv`` positions, in a decode kernel of ``batch``
        sequences (linear in log batch between grid rows, then in kv)."""
        lb = math.log(max(batch, 1.0))
        i = min(max(bisect_right(self._ldb, lb) - 1, 0), len(self._ldb) - 2)
        u = min(max((lb - self._ldb[i]) / (self._ldb[i + 1] - self._ldb[i]), 0.0), 1.0)
        row = (1 - u) * self.wd_values[i] + u * self.wd_values[i + 1]
        out = np.interp(kv, self.kv_grid, row)
        if np.isnan(out).any():  # it read a point not evaluated yet: evaluate, look up again
            kv = np.asarray(kv, float)
            self._decode_fill((i, i + 1), *self._kv_columns(float(kv.min()), float(kv.max())))
            row = (1 - u) * self.wd_values[i] + u * self.wd_values[i + 1]
            out = np.interp(kv, self.kv_grid, row)
        return out

    def prefill_work(self, q: np.ndarray, kv: np.ndarray) -> np.ndarray:
        """W_p per chunk of ``q`` new tokens attending ``kv`` positions (bilinear in log q,
        log kv/q, on log W)."""
        q = np.asarray(q, float)
        lq = np.log(q)
        lr = np.log(np.maximum(np.asarray(kv, float) / q, 1.0))
        i = np.clip(np.searchsorted(self.lq, lq) - 1, 0, len(self.lq) - 2)
        j = np.clip(np.searchsorted(self.lr, lr) - 1, 0, len(self.lr) - 2)
        u = np.clip((lq - self.lq[i]) / (self.lq[i + 1] - self.lq[i]), 0.0, 1.0)
        v = np.clip((lr - self.lr[j]) / (self.lr[j + 1] - self.lr[j]), 0.0, 1.0)
        g = self.lwp
        val = ((1 - u) * (1 - v) * g[i, j] + u * (1 - v) * g[i + 1, j]
               + (1 - u) * v * g[i, j + 1] + u * v * g[i + 1, j + 1])
        return np.exp(val)

    def micro(self, num_sequences: int) -> int:
        """Micro-batches an iteration of ``num_sequences`` splits into: min(pp, n)."""
        return max(1, min(self.pp, int(num_sequences)))

    # ---- iteration times ---------------------------------------------------------------------
    def _combine(self, start: float, tokens: float, logits: float, m: int,
                 decode_work: float | None, prefill_work: float | None,
                 busiest: float | None = None) -> float:
        """start + F(T/m) + H(L/m) + decode work / m + its launch + prefill work / m + its
        launch: one micro-batch's pass through all pp stages (``inference``'s latency view).
        ``busiest``: the busiest attention-DP group's tokens (``dense``)."""
        t = self.dense(tokens / m, logits / m, decode_only=prefill_work is None,
                       busiest=None if busiest is None else busiest / m)
        if decode_work is not None:
            t += decode_work / m + self.decode_launch
        if prefill_work is not None:
            t += prefill_work / m + self.prefill_launch
        if self.pp_layers is not None:
            t = self._paced(t, tokens / m, logits / m, m)
            t = float(t) if np.ndim(t) == 0 else t
        return start + t

    def _paced(self, pass_time, tokens: float, logits: float, m: int):
        """An uneven split's iteration: ``pass_time`` (one micro-batch of ``tokens`` tokens
        and ``logits`` sampled through all stages) with m micro-batches paced by the largest
        stage (``pipeline.pipelined_step_time``, as ``inference._tpot``): its excess over an
        average stage is its extra layers' share of the pass's layer time (embedding, LM
        head and hops apart, ``pipeline.stage_excess``)."""
        hops = self._hop.interp(tokens)
        ends = self._at(tokens, self._x) - hops + self._at(logits, self._h)
        layers = (np.asarray(pass_time) - hops - ends) / self.pp
        excess = stage_excess(self.pp, self.pp_layers, self.model.num_layers, layers, 0.0)
        return pipelined_step_time(pass_time, hops, self.pp, m, excess)

    def iteration_time(self, prefill_q=(), prefill_kv=(), decode_kv=(),
                       logits: float | None = None) -> float:
        """Seconds for one iteration: prefill chunks (new tokens ``prefill_q`` attending
        ``prefill_kv`` positions each) and decode sequences attending ``decode_kv`` positions
        each (context + 1). ``logits`` defaults to one per sequence (every chunk ends its
        prompt)."""
        pq = np.asarray(prefill_q, float)
        pkv = np.asarray(prefill_kv, float)
        dkv = np.asarray(decode_kv, float)
        n = pq.size + dkv.size
        if n == 0:
            return 0.0
        m = self.micro(n)
        busiest, mine, share = self._busiest(pq.tolist(), dkv.size)
        kernel = self._kernel(dkv.size, m, busiest, share)
        dec = self.decode_work(dkv, kernel).sum() * share if dkv.size else None
        pre = None
        if pq.size:
            work = self.prefill_work(pq, pkv)
            pre = work.sum() if busiest is None else self.groups * work[mine].sum()
        return self._combine(0.0, pq.sum() + dkv.size, n if logits is None else logits, m,
                             dec, pre, busiest)

    def single_decode_times(self, decode_kv) -> np.ndarray:
        """``iteration_time([], [], [c])`` for every c of ``decode_kv`` in one call: the
        iterations of one decoding sequence attending c positions (an idle replica's decode
        steps, ``deploy.zero_load``); the same terms, element by element."""
        dkv = np.asarray(decode_kv, float)
        m = self.micro(1)
        busiest, _, share = self._busiest([], 1)
        dec = self.decode_work(dkv, self._kernel(1, m, busiest, share)) * share
        return np.asarray(self._combine(0.0, 1.0, 1, m, dec, None, busiest), float) \
            * np.ones_like(dkv)

    def step_time(self, chunks: list[tuple[int, int]], decode_kv: np.ndarray | None,
                  logits: int, overhead: float = 0.0, chunk_groups=None,
                  decode_groups=None) -> float:
        """``iteration_time`` in plain Python for the event loop: ``chunks`` [(new tokens,
        positions attended)], ``decode_kv`` the decoding sequences' positions (context + 1),
        ``logits`` the sequences that sample a token, plus the engine's ``overhead``.
        With attention DP, ``chunk_groups`` / ``decode_groups``: the group each chunk /
        decoding sequence runs on (``_busiest``)."""
        nd = 0 if decode_kv is None else decode_kv.size
        busiest, mine, share = self._busiest([q for q, _ in chunks], nd, chunk_groups,
                                             decode_groups)
        pre, tokens = 0.0, 0
        if busiest is None:
            for q, kv in chunks:
                pre += self.prefill_one(q, kv)
                tokens += q
        else:  # the busiest group's chunks, at their own (whole-sequence) work
            for j in mine:
                pre += self.groups * self.prefill_one(*chunks[j])
            tokens = sum(q for q, _ in chunks)
        m = self.micro(nd + len(chunks))
        dec = float(self.decode_work(decode_kv, share * nd / m).sum()) * share if nd else None
        return self._combine(overhead, tokens + nd, logits, m, dec, pre if chunks else None,
                             busiest)

    def decode_run_times(self, ctx: np.ndarray, k: int, overhead: float = 0.0) -> np.ndarray:
        """Times of ``k`` decode iterations of a batch at contexts ``ctx`` (each step adds a
        token to every sequence). The dense part is the same every step; the attention work
        is exact up to 16 steps, then sampled at KNOTS points and interpolated (it is linear
        in context)."""
        n = ctx.size
        m = self.micro(n)
        busiest, _, share = self._busiest((), n)  # attention DP: the busiest group's share
        per_kernel = share * n / m  # sequences in one batched decode kernel (x groups)
        if k == 1:
            work = self.decode_work(ctx + 1.0, per_kernel).sum(keepdims=True)
        elif k <= 16:
            work = self.decode_work(ctx[:, None] + np.arange(1.0, k + 1.0),
                                    per_kernel).sum(axis=0)
        else:
            knots = _KNOT_FRACTIONS * (k - 1) // (KNOTS - 1)  # distinct for k > 16
            w = self.decode_work(ctx[:, None] + (knots + 1.0), per_kernel).sum(axis=0)
            work = np.interp(np.arange(k), knots, w)
        base = self.dense(n / m, n / m, decode_only=True, busiest=busiest) + self.decode_launch
        times = share * work / m + base
        if self.pp_layers is not None:
            times = self._paced(times, n / m, n / m, m)
        return times + overhead


def kv_capacity(model: ModelSpec, system: System, plan: InferPlan,
                profile: CalibrationProfile, max_tokens: int, max_batch: int) -> KVCapacity:
    """Blocks of the paged KV cache on one instance. The memory terms are those of
    ``perfmodel.inference`` for ``max_batch`` sequences and ``max_tokens`` in flight (weights
    of the largest stage, workspace, CUDA context, allocator reserve); the rest of the
    device's memory becomes the block pool, at the KV bytes per token of the largest stage's
    layers (an uneven split, ``plan.pp_layers``; L / pp otherwise). With attention DP every
    group of the instance holds its own pool of that many blocks (its own requests' KV), and
    ``max_batch`` (the instance's) spreads over the groups; the instance's pool is all of
    theirs."""
    groups = int(np.max(plan.attention_dp))
    probe = replace(plan, batch=max_batch, prompt_len=max(max_tokens / max_batch, 1.0),
                    output_len=1)
    mem = {k: float(np.asarray(v)) for k, v in inference(model, system, probe, profile).memory
           .items()}
    # blocks count the KV that grows with context (full-attention layers); sliding-window
    # layers' last W tokens and linear-attention states are a fixed amount per sequence,
    # reserved for max_batch sequences (memory.kv_growth_bytes_per_token / kv_fixed_...)
    # per GPU: its stage's share of the layers, the largest stage's with an uneven split
    # (every stage allocates the same block count, so the fullest one bounds it)
    share = 1.0 / plan.pp if plan.pp_layers is None else max(plan.pp_layers) / model.num_layers
    per_token = float(kv_growth_bytes_per_token(model, plan.kv_dtype, plan.tp) * share)
    fixed = float(kv_fixed_bytes_per_sequence(model, plan.kv_dtype, plan.tp,
                                              int(plan.kv_block_size))) * share \
        * max_batch / groups
    mo = profile.memory_overheads
    usable = memory_capacity_bytes(system.device) * (1 - mo.allocator_fraction)
    free = usable - (mem["weights"] + mem["activations"] + mem["cuda_context"]) - fixed
    # a model without attention layers has no growing KV: one byte per token keeps the
    # block count finite (its capacity is then set by the fixed states and max_batch)
    per_token = max(per_token, 1.0)
    blocks = int(max(np.floor(free / (per_token * plan.kv_block_size)), 0))
    pool = blocks * plan.kv_block_size * per_token + fixed
    allocated = mem["weights"] + mem["activations"] + pool
    memory = {"weights": mem["weights"], "kv_cache": pool, "activations": mem["activations"],
              **{k: float(v) for k, v in overhead_bytes(allocated, mo).items()}}
    return KVCapacity(per_token, int(plan.kv_block_size), blocks * groups, memory)
