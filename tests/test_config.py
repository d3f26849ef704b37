"""gitevo.toml validation: good configs load; each bad key gives one line naming file and key."""

from __future__ import annotations

import json

import pytest

from gitevo import config
from gitevo.config import ConfigError

GOOD = """
[genes]
files = ["model.py"]
blocks = ["model.py::SE"]

[fitness]
command = "python train.py --fidelity {fidelity} --data {data} --metrics {metrics}"
check = "python train.py --check --metrics {metrics}"
fidelity = "demo"
timeout = 120
[fitness.vars]
data = "/data/cifar"

[objectives]
accuracy = "max"
params = { sense = "min", reference = 1000000 }

[evolution]
population = 6
offspring = 4
seed = 3
constraints = ["params <= 518230", "accuracy > 0.1"]

[llm]
provider = "offline"

[executor]
kind = "local"
workers = 2
"""


def test_good_config_loads_every_section():
    conf = config.parse(GOOD, "repo/gitevo.toml")
    assert conf.genes.files == ("model.py",) and conf.genes.blocks == ("model.py::SE",)
    assert conf.fitness.vars == {"data": "/data/cifar"} and conf.fitness.timeout == 120
    assert conf.objective_names == ["accuracy", "params"]
    assert conf.senses == ["max", "min"]
    assert conf.objectives[1].reference == 1_000_000
    assert conf.evolution.population == 6 and conf.evolution.seed == 3
    assert [str(c) for c in conf.evolution.constraints] == ["params <= 518230",
                                                             "accuracy > 0.1"]
    assert conf.executor.workers == 2


def test_defaults_fill_optional_sections():
    conf = config.parse('[genes]\nfiles=["a.py"]\n[fitness]\ncommand="x {metrics}"\n'
                        '[objectives]\nloss="min"\n')
    assert conf.evolution.offspring == 8 and conf.llm.provider == "offline"
    assert conf.executor.kind == "local" and conf.fitness.check is None


def test_constraint_violation_amounts():
    le = config.Constraint("params", "<=", 100)
    gt = config.Constraint("accuracy", ">", 0.5)
    assert le.violation(90) == 0 and le.violation(100) == 0 and le.violation(130) == 30
    assert gt.violation(0.7) == 0 and gt.violation(0.4) == pytest.approx(0.1)
    assert gt.violation(0.5) > 0  # strict bound met with equality


BAD = [
    ('files = ["model.py"]', 'files = []', "genes.files"),
    ('files = ["model.py"]', 'files = ["../x.py"]', "genes.files"),
    ('blocks = ["model.py::SE"]', 'blocks = ["other.py::SE"]', "genes.blocks"),
    ('command = "python train.py', 'commandx = "python train.py', "fitness.commandx"),
    ('timeout = 120', 'timeout = -5', "fitness.timeout"),
    ('timeout = 120', 'timeout = "soon"', "fitness.timeout"),
    ('fidelity = "demo"', 'fidelity = 3', "fitness.fidelity"),
    ('data = "/data/cifar"', 'data = 7', "fitness.vars.data"),
    ('accuracy = "max"', 'accuracy = "up"', "objectives.accuracy"),
    ('population = 6', 'population = 0', "evolution.population"),
    ('offspring = 4', 'offspring = true', "evolution.offspring"),
    ('seed = 3', 'seed = 1.5', "evolution.seed"),
    ('"params <= 518230"', '"params about 5"', "evolution.constraints"),
    ('provider = "offline"', 'provider = "skynet"', "llm.provider"),
    ('kind = "local"', 'kind = "mainframe"', "executor.kind"),
    ('workers = 2', 'workers = 0', "executor.workers"),
    ('[executor]', '[executorz]', "executorz"),
]


MINIMAL = '[genes]\nfiles=["a.py"]\n[fitness]\ncommand="x {metrics}"\n[objectives]\nl="min"\n'
CLUSTER = MINIMAL + """
[executor]
kind = "slurm"
retries = 3
[executor.ray]
address = "ray://head:10001"
num_cpus = 2
num_gpus = 0.5
[executor.slurm]
partition = "gpu"
time = "1:30:00"
gpus_per_task = 1
mem_gb = 16
cpus_per_task = 4
folder = "/shared/gitevo"
[executor.slurm.sbatch]
account = "evo"
qos = 2
"""


@pytest.mark.parametrize("value,minutes", [
    ("45", 45), ("30:00", 30), ("0:30", 1), ("1:30:00", 90), ("2-12", 3600),
    ("2-12:30", 3630), ("1-0:0:30", 1441), (120, 120)])
def test_slurm_time_reads_as_sbatch_does(value, minutes):
    text = CLUSTER.replace('time = "1:30:00"', f"time = {json.dumps(value)}")
    assert config.parse(text).executor.slurm.time == minutes


def test_executor_sections_load():
    ex = config.parse(CLUSTER).executor
    assert (ex.kind, ex.workers, ex.retries, ex.gpus, ex.per_gpu) == ("slurm", 0, 3, "auto", 1)
    assert ex.ray == config.RayOptions("ray://head:10001", 2.0, 0.5)
    assert ex.slurm.time == 90 and ex.slurm.partition == "gpu" and ex.slurm.mem_gb == 16
    assert ex.slurm.sbatch == {"account": "evo", "qos": "2"} and ex.slurm.cluster == "slurm"
    local = config.parse(MINIMAL + '[executor]\ngpus = [0, "1"]\n').executor
    assert (local.workers, local.gpus, local.retries) == (1, ("0", "1"), 2)


BAD_EXECUTOR = [
    ('retries = 3', 'retries = -1', "executor.retries"),
    ('retries = 3', 'per_gpu = 0', "executor.per_gpu"),
    ('retries = 3', 'gpus = "all"', "executor.gpus"),
    ('retries = 3', 'gpus = [0.5]', "executor.gpus"),
    ('retries = 3', 'nodes = 2', "executor.nodes"),
    ('num_cpus = 2', 'num_cpus = -1', "executor.ray.num_cpus"),
    ('num_cpus = 2', 'cpus = 2', "executor.ray.cpus"),
    ('time = "1:30:00"', 'time = "soon"', "executor.slurm.time"),
    ('time = "1:30:00"', 'time = 0', "executor.slurm.time"),
    ('mem_gb = 16', 'mem_gb = 0', "executor.slurm.mem_gb"),
    ('gpus_per_task = 1', 'gpus_per_task = -2', "executor.slurm.gpus_per_task"),
    ('qos = 2', 'qos = [2]', "executor.slurm.sbatch.qos"),
    ('folder = "/shared/gitevo"', 'cluster = "aws"', "executor.slurm.cluster"),
]


CASES = [(GOOD, *b) for b in BAD] + [(CLUSTER, *b) for b in BAD_EXECUTOR]


@pytest.mark.parametrize(("base", "old", "new", "key"), CASES,
                         ids=[c[3] + ":" + c[2] for c in CASES])
def test_each_bad_key_is_named_in_one_line(base, old, new, key):
    assert old in base
    with pytest.raises(ConfigError) as err:
        config.parse(base.replace(old, new, 1), "repo/gitevo.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"repo/gitevo.toml: {key}"), message


def test_unknown_placeholder_is_refused():
    text = GOOD.replace("--data {data}", "--data {dataset}")
    with pytest.raises(ConfigError, match=r"fitness.command: unknown placeholder \{dataset\}"):
        config.parse(text, "gitevo.toml")


def test_prepare_is_optional_and_its_placeholders_are_checked():
    assert config.parse(GOOD).fitness.prepare is None
    text = GOOD.replace("[fitness]\n", "[fitness]\nprepare = \"fetch --into {data}\"\n", 1)
    assert config.parse(text).fitness.prepare == "fetch --into {data}"
    with pytest.raises(ConfigError, match=r"fitness.prepare: unknown placeholder \{mirror\}"):
        config.parse(text.replace("{data}\"", "{mirror}\""), "gitevo.toml")


def test_shell_braces_are_not_placeholders():
    text = GOOD.replace("--data {data}", "--data ${DATA} {data}")
    assert config.parse(text).fitness.command.count("${DATA}") == 1


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.parse("[genes\n", tmp_path / "gitevo.toml")
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "gitevo.toml")


def test_missing_objectives_section():
    with pytest.raises(ConfigError, match="objectives: at least one objective"):
        config.parse('[genes]\nfiles=["a.py"]\n[fitness]\ncommand="x"\n')


def test_render_round_trips():
    text = config.render(["a.py"], "python f.py --metrics {metrics}",
                         [("accuracy", "max"), ("size", "min")], check="python c.py",
                         variables={"data": "/d"})
    conf = config.parse(text)
    assert conf.genes.files == ("a.py",) and conf.fitness.check == "python c.py"
    assert conf.fitness.vars == {"data": "/d"} and conf.senses == ["max", "min"]
