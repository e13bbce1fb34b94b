"""The golden comparison ignores last-bit rounding but nothing a modelling change would do."""

from golden import differences


def test_last_bit_rounding_is_equal():
    assert differences({"a": [0.086100208948924, 2]}, {"a": [0.08610020894891335, 2]}) == []


def test_a_real_change_a_new_key_or_a_type_change_is_reported():
    assert differences({"t": 1.0000001}, {"t": 1.0}) == [".t: 1.0000001 != 1.0"]
    assert differences({"t": 1.0, "u": 2}, {"t": 1.0}) == [": keys ['u']"]
    assert differences({"t": None}, {"t": 0.0}) == [".t: None != 0.0"]
    assert differences({"s": "fits"}, {"s": "oom"}) == [".s: 'fits' != 'oom'"]
    assert differences([1.0, 2.0], [1.0]) == [": length 2 != 1"]
    assert differences(True, 1) == [": True != 1"]
