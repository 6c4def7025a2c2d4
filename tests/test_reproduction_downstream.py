"""Issue 13's check of `gadre-error` on public data the project does not ship (skipped when it is
absent; see docs/DATA.md): Gadre et al. 2024's downstream errors of the 1.4B and 6.9B models."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_script as _script, needs_data




@needs_data("gadre2024_mlfoundations_scaling")
def test_downstream_error_from_loss_on_the_paper_targets() -> None:
    script = _script("reproduce_downstream_error")
    evals = script.dataset(script.DATASET) / "exp_data" / "evals"
    if not evals.is_dir():  # an older copy of the dataset holds the loss JSONs only
        pytest.skip(f"public data not found: {evals} is missing; copy exp_data/evals/ of mlfoundations/scaling "
                    "(docs/DATA.md)")
    r = script.reproduce()
    assert r["n_error_fit"] == 6 and not any(r["refused"].values())
    targets = {(t["model"], t["M"]): t for t in r["targets"]}
    assert set(targets) == set(script.ANCHORS)
    # The notebook's own procedure on our tables gives its printed numbers: the data is read as the paper read it.
    for key, anchor in script.ANCHORS.items():
        assert targets[key]["official_rel_chained"] == pytest.approx(anchor, abs=2e-6)
    # Ours, chained through `gadre` as the paper does: no worse than the paper's worst target (3.64%);
    # measured 1.35% (1.4B) and 2.62% (6.9B), where the paper's 0.05% at 6.9B is a loss error cancelling an
    # error-law error (its Err(L) alone misses that model by 1.0%).
    chained = [t["rel_chained"] for t in targets.values()]
    assert max(chained) <= max(script.ANCHORS.values())
    assert sum(chained) / len(chained) < 0.025
    # Err(L) alone, from the observed loss: within 4% on both (measured 0.76%, 3.26%).
    assert max(t["rel_from_loss"] for t in targets.values()) < 0.04


def test_downstream_error_script_names_the_missing_dir(tmp_path: Path) -> None:
    script = _script("reproduce_downstream_error")
    with pytest.raises(script.DataMissing, match=str(tmp_path / "gadre2024_mlfoundations_scaling")):
        script.reproduce(tmp_path)
