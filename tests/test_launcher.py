"""Past one machine: the SLURM launcher config and the multi-node trainer, without a cluster.

The worked example of docs/cluster.md is composed as written, its launcher builds the sbatch
script it would submit, and its trainer is built inside a faked SLURM task to show which rank
Lightning makes of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf
from pytorch_lightning.strategies import DDPStrategy
from submitit.slurm.slurm import SlurmExecutor

from conftest import CONF

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"
LAUNCHER_YAML = CONF / "hydra" / "launcher" / "submitit_slurm.yaml"

# A file named like the plugin's own config is matched against the plugin's schema (a Hydra
# deprecation warning; the values are still type-checked).
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/submitit_slurm' is validated")


def documented_overrides() -> list[str]:
    """The overrides of the SLURM example in docs/cluster.md, as a shell would split them."""
    text = DOCS.read_text()
    start = text.index("python train.py -m hydra/launcher=submitit_slurm")
    words = text[start : text.index("```", start)].replace("\\\n", " ").split()
    assert words[:3] == ["python", "train.py", "-m"]
    return words[3:]


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.fixture
def slurm_config(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                *documented_overrides(),
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
                f"paths.output_dir={tmp_path / 'run'}",
            ],
            return_hydra_config=True,
        )


def test_launcher_config_has_every_field_of_the_plugin_and_no_other():
    # Spelled out in full, so it does not depend on Hydra's deprecated schema matching.
    ours = set(OmegaConf.load(LAUNCHER_YAML).keys())
    assert ours == set(OmegaConf.structured(SlurmQueueConf).keys())


def test_documented_example_instantiates_the_slurm_launcher(slurm_config):
    launcher_cfg = slurm_config.hydra.launcher
    # By name: Hydra's plugin discovery may load the plugin module a second time.
    assert _name(get_class(launcher_cfg._target_)) == _name(SlurmLauncher)
    launcher = instantiate(launcher_cfg)
    assert _name(type(launcher)) == _name(SlurmLauncher)
    expected = {"partition": "gpu", "nodes": 2, "gpus_per_node": 4, "tasks_per_node": 4}
    assert {k: launcher.params[k] for k in expected} == expected
    assert launcher.params["submitit_folder"].startswith(str(slurm_config.hydra.sweep.dir))


def test_documented_example_submits_one_task_per_gpu(slurm_config, monkeypatch):
    """The sbatch script the launcher would submit, built by submitit itself."""
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    submitted = {}

    def map_array(executor, fn, *iterables):  # instead of calling sbatch
        submitted.update(executor=executor, jobs=list(zip(*iterables, strict=True)))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher = instantiate(slurm_config.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=slurm_config)
    launcher.launch([["model=nrms"]], initial_job_idx=0)

    assert len(submitted["jobs"]) == 1
    script = submitted["executor"]._executor._make_submission_file_text("python -c pass", "0")
    sbatch = {
        line.split("=")[0]: line.split("=", 1)[1]
        for line in script.splitlines()
        if "=" in line and line.startswith("#SBATCH --")
    }
    assert sbatch["#SBATCH --partition"] == "gpu"
    assert sbatch["#SBATCH --nodes"] == "2"
    assert sbatch["#SBATCH --ntasks-per-node"] == "4"
    assert sbatch["#SBATCH --gpus-per-node"] == "4"
    assert sbatch["#SBATCH --time"] == "240"
    assert "srun" in script  # the tasks are started by srun, which is what Lightning detects


def test_documented_trainer_matches_the_launcher(slurm_config):
    trainer, launcher = slurm_config.trainer, slurm_config.hydra.launcher
    assert trainer.devices == launcher.tasks_per_node == launcher.gpus_per_node == 4
    assert trainer.num_nodes == launcher.nodes == 2
    assert trainer.accelerator == "gpu" and trainer.precision == "bf16-mixed"
    assert get_class(trainer.strategy._target_) is DDPStrategy


def test_trainer_in_a_slurm_task_is_the_rank_slurm_gave_it(slurm_config, monkeypatch):
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    # Building a Trainer sets the process-wide rank: restore it for the tests that follow
    # in this process (a rank-5 leftover would silence every rank_zero_only write).
    monkeypatch.setattr(rank_zero_only, "rank", getattr(rank_zero_only, "rank", 0))
    """Task 5 of 8 (second node, second GPU), as srun would start it."""
    slurm = {
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_NNODES": "2",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK"):
        monkeypatch.setenv(name, "")  # recorded, so that what Lightning sets is undone after
        monkeypatch.delenv(name)
    # accelerator=cpu: the same topology without a GPU; nothing starts before fit().
    trainer = instantiate(
        slurm_config.trainer, accelerator="cpu", precision="32-true", logger=False, callbacks=[]
    )
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert environment.creates_processes_externally  # Lightning starts no processes itself
    assert isinstance(trainer.strategy, DDPStrategy)
    assert (trainer.world_size, trainer.global_rank) == (8, 5)
    assert (trainer.node_rank, trainer.local_rank) == (1, 1)
    assert environment.main_address == "gpu07"
    assert trainer.strategy._ddp_kwargs["broadcast_buffers"] is False
    environment.validate_settings(num_devices=4, num_nodes=2)
    with pytest.raises(ValueError, match="ntasks-per-node"):
        environment.validate_settings(num_devices=2, num_nodes=2)
