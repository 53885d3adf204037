"""The optimizer job's studies: older ledgers (the step scale stored as "epochs") still resume."""

import gzip
import shutil
from pathlib import Path

import optuna
import pytest

from diffsearch.errors import UsageError
from diffsearch.jobs.optimizer import JOB, OptimizerOptions
from diffsearch.jobs.optimizer_ledger import RuleTrialRunner
from diffsearch.ledger import create_or_load_study, open_storage
from diffsearch.spaces.update_rule_space import UpdateRuleSpace

COMMITTED = Path(__file__).parents[2] / "benchmarks" / "results" / "optimizer_search.db.gz"


pytestmark = pytest.mark.slow  # unpacks a 1.7 MB ledger of 1,800 trials


@pytest.fixture(scope="module")
def committed_ledger(tmp_path_factory):
    """A copy of the committed benchmark ledger, written before the scale had its own attr."""
    path = tmp_path_factory.mktemp("ledger") / "optimizer_search.db"
    with gzip.open(COMMITTED) as packed, open(path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return open_storage(f"sqlite:///{path}")


def _attrs(scale: float) -> dict:
    options = OptimizerOptions(
        searcher="mct", budget=128, seed=0, scale=scale, study="bench-mct-seed0", storage="unused.log"
    ).resolved()
    return JOB.studies(options)["bench-mct-seed0"]


def test_a_committed_study_resumes_with_its_scale_read_from_the_old_attr(committed_ledger):
    old = optuna.load_study(study_name="bench-mct-seed0", storage=committed_ledger)
    assert "scale" not in old.user_attrs and old.user_attrs["epochs"] == 1.0
    trials = len(old.trials)
    study = create_or_load_study(committed_ledger, "bench-mct-seed0", _attrs(1.0), JOB.identity, JOB.renamed)
    assert study.user_attrs["scale"] == 1.0 and len(study.trials) == trials  # nothing lost, nothing added
    assert RuleTrialRunner(study, UpdateRuleSpace()).scale == 1.0


def test_a_committed_study_refuses_another_scale_in_one_line(committed_ledger):
    with pytest.raises(UsageError, match=r"scale=1\.0, not 10\.0") as error:
        create_or_load_study(committed_ledger, "bench-mct-seed0", _attrs(10.0), JOB.identity, JOB.renamed)
    assert "\n" not in str(error.value)
