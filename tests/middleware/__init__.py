"""Tests of each stage on its own, against scripted call_next and a fake clock."""
