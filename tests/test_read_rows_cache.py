"""converters.read_rows keeps one parse per file: each call still hands out fresh dicts, and an
edited file is read anew."""

from perfmodel.calibrate import converters as C


def test_rows_are_fresh_each_call_and_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("m,dtype,latency\n8,bf16,0.5\n16,bf16,x\n")
    first = C.read_rows(path)
    assert first == [{"m": 8, "dtype": "bf16", "latency": 0.5},
                     {"m": 16, "dtype": "bf16", "latency": "x"}]
    first[0]["m"] = 99
    first.append({})
    assert C.read_rows(path)[0]["m"] == 8 and len(C.read_rows(path)) == 2
    path.write_text("m,dtype,latency\n32,fp8,1.25\n")
    assert C.read_rows(path) == [{"m": 32, "dtype": "fp8", "latency": 1.25}]
    assert C.read_rows(tmp_path / "." / "t.csv") == [{"m": 32, "dtype": "fp8", "latency": 1.25}]
