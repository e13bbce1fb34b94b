"""A device with no price in the table is simulated and shown with "no price", not skipped as
"costing more than the cheapest" (its cost cannot be compared; its replicas, latencies and
frontier still answer the planner). QA: MI355X beside a priced MI300X was listed as "not
simulated (even their throughput estimate costs more ...)" although it has no price at all."""

from perfmodel.serving.capacity import render_plan
from perfmodel.serving.economics import load_prices


def test_unpriced_device_is_simulated_and_says_no_price():
    from perfmodel.api import plan_serving

    prices = load_prices()
    assert "h100-sxm5-80gb" in prices.devices
    unpriced = next(d for d in ("mi355x", "b300", "gb300", "h100-sxm5-96gb")
                    if d not in prices.devices)
    result = plan_serving(model="llama-3-8b", rate=2, prompt_len=512, output_len=64,
                          ttft_p90=2, tpot_p90=0.1, devices=["h100-sxm5-80gb", unpriced],
                          tp=[1], num_requests=60)
    rows = [c for c in result.candidates if c.device == unpriced]
    assert rows and not any(c.reason.startswith("skipped") for c in rows)
    # an 8B model at 2 req/s and loose SLOs: one GPU of any datacenter device serves it
    assert any(c.feasible and c.cost is None and c.simulations > 0 for c in rows)
    text = render_plan(result)
    assert "no price" in text
    assert "not simulated" not in text  # nothing was skipped for cost here
    # the answer stays the priced device (a row without a price is never the cheapest)
    assert result.best.device == "h100-sxm5-80gb"
