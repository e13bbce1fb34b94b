"""A bad value in a serving trace CSV names the file, the row and the column."""

from __future__ import annotations

import re

import pytest

from perfmodel.errors import SpecError
from perfmodel.serving.workload import read_trace


@pytest.mark.parametrize(("text", "expected"), [
    ("prompt_len,output_len\n10,5\n12,x\n", r"row 2 \(line 3\): output_len is not a number: 'x'"),
    ("prompt_len,output_len\n10,5\n12\n", r"row 2 \(line 3\): output_len has no value"),
    ("prompt_len,output_len\n10,5\n0,3\n", r"row 2 \(line 3\): prompt_len must be >= 1"),
    ("prompt_len,output_len\nnan,5\n", r"row 1 \(line 2\): prompt_len is not a number"),
    ("prompt_len,output_len\n10,1e30\n", r"row 1 \(line 2\): output_len is out of range"),
    ("prompt_len,output_len,arrival_s\n1,1,0\n1,1,2\n1,1,1\n",
     r"row 3 \(line 4\): arrival_s must be sorted"),
    ("prompt_len,output_len,arrival_s\n1,1,0\n1,1,-1\n",
     r"row 2 \(line 3\): arrival_s must be finite and >= 0"),
    ('prompt_len,output_len,arrival_s\n1,1,"0\n"\n1,1,zz\n',
     r"row 2 \(line 4\): arrival_s is not a number"),
])
def test_bad_value_names_file_row_and_column(tmp_path, text, expected):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"trace {re.escape(str(path))}: {expected}"):
        read_trace(path)


def test_good_trace_reads(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("prompt_len,output_len,arrival_s\n10,5.0,0\n12,3,0.5\n")
    prompt, output, arrival = read_trace(path)
    assert prompt.tolist() == [10, 12] and output.tolist() == [5, 3]
    assert arrival.tolist() == [0.0, 0.5]
