"""Where parallel group members sit, by hand (Megatron rank order)."""

from perfmodel.topology import group_spans


def test_group_placement_hand_cases():
    """8 GPUs per node, order tp-cp-ep-dp-pp. TP 2 x DP 8: the DP group has stride 2, so 4 of
    its 8 members share a node (2 nodes). TP 8 x PP 4: pipeline neighbours are 8 ranks apart,
    each on another node."""
    spans = group_spans(8, "tp-cp-ep-dp-pp", tp=2, dp=8)
    assert (float(spans["dp"].local), float(spans["dp"].nodes)) == (4.0, 2.0)
    assert (float(spans["tp"].local), float(spans["tp"].nodes)) == (2.0, 1.0)
    spans = group_spans(8, "tp-cp-ep-dp-pp", tp=8, pp=4)
    assert (float(spans["pp"].local), float(spans["pp"].nodes)) == (1.0, 4.0)
    # a different order puts DP innermost: all 8 DP members on one node
    spans = group_spans(8, "dp-tp-cp-ep-pp", tp=2, dp=8)
    assert float(spans["dp"].nodes) == 1.0 and float(spans["tp"].nodes) == 2.0

