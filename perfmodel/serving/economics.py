"""Money and energy of a deployment: an editable GPU price table (``prices.yaml``, every
price one provider's dated on-demand list price with its source) and energy from power.

Energy = power x GPUs x time, so joules per output token = power x GPUs / (output tokens/s).
Power is the board power measured at calibration time when the calibration profile of this
device recorded one (``device_facts``: power_w / mean_power_w / measured_power_w), else the
datasheet TDP, which bounds the draw from above (decode-heavy serving runs well below TDP).
"""

from functools import cache
from pathlib import Path

from pydantic import Field

from ..errors import SpecError
from ..paths import data_dir
from ..profile import CalibrationProfile
from ..specs.common import Strict
from ..specs.hardware import DeviceSpec
from ..specs.registry import load_file

POWER_FACT_KEYS = ("power_w", "mean_power_w", "measured_power_w")


class PriceSource(Strict):
    id: str
    title: str = Field(min_length=3)
    url: str = Field(min_length=8)
    date: str
    read_via: str | None = None


class Offer(Strict):
    usd_per_gpu_hour: float = Field(gt=0)
    provider: str
    offer: str
    source: str
    date: str


class DevicePrice(Offer):
    alternatives: list[Offer] = Field(default_factory=list)


class PriceTable(Strict):
    currency: str = "USD"
    basis: str
    sources: list[PriceSource]
    devices: dict[str, DevicePrice]

    def source(self, sid: str) -> PriceSource:
        for s in self.sources:
            if s.id == sid:
                return s
        raise SpecError(f"price table: unknown source {sid!r}")



def default_prices_path() -> Path:
    """The shipped, dated price table (hardware_specs/prices.yaml)."""
    return data_dir("hardware_specs") / "prices.yaml"

def load_prices(path: str | Path | None = None) -> PriceTable:
    return _load(str(Path(path).resolve()) if path else str(default_prices_path()))


@cache
def _load(path: str) -> PriceTable:
    # read as every spec file is (registry.load_file: errors name the file): inside
    # parse_cache() a fresh plan-training process loads the validated table instead of
    # building PriceTable's validator and validating it again (~17 M instructions of ~2.2 G,
    # callgrind; issue 10 item 5)
    table = load_file(PriceTable, path)
    ids = {s.id for s in table.sources}
    for dev, price in table.devices.items():
        for offer in [price, *price.alternatives]:
            if offer.source not in ids:
                raise SpecError(f"price table {path}: devices.{dev}: unknown source "
                                f"{offer.source!r} (sources: {sorted(ids)})")
    return table


def cost_report(table: PriceTable, device_id: str, num_gpus: int,
                output_tokens_per_s: float) -> dict | None:
    """USD per hour and per million output tokens at the simulated throughput."""
    price = table.devices.get(device_id)
    if price is None:
        return None
    per_hour = price.usd_per_gpu_hour * num_gpus
    tokens_per_hour = output_tokens_per_s * 3600.0
    src = table.source(price.source)
    return {
        "usd_per_gpu_hour": price.usd_per_gpu_hour,
        "usd_per_hour": per_hour,
        "usd_per_million_output_tokens": per_hour / tokens_per_hour * 1e6
        if tokens_per_hour > 0 else float("inf"),
        "price": f"{price.provider} on-demand list price, {price.offer} ({price.date})",
        "source": {"title": src.title, "url": src.url, "date": src.date},
    }


def power_per_gpu(device: DeviceSpec, profile: CalibrationProfile | None
                  ) -> tuple[float | None, str]:
    """(watts, basis): measured board power of a calibration on this device, else TDP."""
    if profile is not None and profile.device == device.id:
        for key in POWER_FACT_KEYS:
            value = profile.device_facts.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return float(value), f"measured ({profile.id}: device_facts.{key})"
    if device.tdp_w:
        return float(device.tdp_w), "TDP (datasheet; an upper bound on the draw)"
    return None, "unknown (no TDP in the device spec and no measured power)"


def energy_report(device: DeviceSpec, profile: CalibrationProfile | None, num_gpus: int,
                  output_tokens_per_s: float) -> dict:
    watts, basis = power_per_gpu(device, profile)
    if watts is None or output_tokens_per_s <= 0:
        return {"power_basis": basis}
    total = watts * num_gpus
    jpt = total / output_tokens_per_s
    return {"power_w_per_gpu": watts, "power_w": total, "power_basis": basis,
            "joules_per_output_token": jpt, "kwh_per_million_output_tokens": jpt * 1e6 / 3.6e6}
