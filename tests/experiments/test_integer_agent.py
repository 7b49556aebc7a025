"""The integer-only C agent study on CartPole with tiny settings: it compiles, plays, and reports what it says."""
import json
import shutil

import pytest

pytest.importorskip("gymnasium")


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler (cc) on PATH")
def test_the_integer_agent_study_runs_and_reports(tmp_path, monkeypatch):
    from experiments.rl import integer_agent
    monkeypatch.setenv("LC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert integer_agent.main(["--env", "cartpole", "--episodes", "3", "--lc-steps", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["agent"].split(" ")[0] for r in rows] == ["reference", "direct", "LC"]
    for r in rows:
        assert r["episodes"] == 3 and 0 <= r["action_agreement_on_replay_states"] <= 1
        assert r["code_and_weights_bytes"] < r["float32_weight_bytes"]
    assert rows[1]["weights_from"] == ["lc grid"] and rows[0]["weights_from"] == ["rounded"]
