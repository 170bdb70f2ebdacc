"""One typed configuration per chapter, built by one function from the profile and the notebook's
parameters.

Every chapter's setup cell is the same three lines::

    from cbirlib.studies import chapters

    cfg = chapters.configure("03_retrieval", globals())
    print(cfg.summary())

:func:`configure` checks the parameters the notebook declares (:mod:`.parameters`: an unknown name
or a wrong type is a clear error before any work), fills in the profile's value
(:mod:`cbirlib.profiles`) for each one left None, and returns the chapter's frozen dataclass. Its
fields are the notebook's parameters as run (a test checks that the two lists agree);
:meth:`Chapter.record` is what the chapter's tables record as their parameters, and
:meth:`Chapter.summary` the lines it prints first. The chapters that train also carry their
validated experiment configuration (``experiment``, or ``experiments`` with one per model), built
by their study's ``config_for``, so that an impossible combination fails here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from .. import profiles
from ..learning.experimentconfig import ExperimentConfig
from . import parameters as cbparams

#: parameters that say where results go or how a run looks, not what it computes: never recorded
NOT_RECORDED = ("profile", "results_dir", "results_name", "progress", "sweep", "attack_sweep", "regime_sweep",
                "gpu_sweep")


@dataclass(frozen=True, kw_only=True)
class Chapter:
    """What every chapter has: its profile, where its tables go, and the line saying what it ran with."""

    notebook: ClassVar[str] = ""
    profile: str
    results_dir: str | None = None
    #: the parameters as given (before the profile's values): what "ran with" reports
    given: dict = field(default_factory=dict, repr=False, compare=False)

    def _experiment_fields(self) -> set[str]:
        exp = getattr(self, "experiment", None)
        return {f.name for f in fields(exp)} if exp is not None else set()

    def record(self) -> dict:
        """The parameters the chapter's tables are written with: the experiment's record (when it
        trains), the profile, the values taken from the profile, then the other parameters that
        change what is computed."""
        exp = getattr(self, "experiment", None)
        out = dict(exp.record()) if exp is not None else {}
        table = profiles.PROFILES.get(self.notebook, {}).get(self.profile, {})
        names = [f.name for f in fields(self) if f.init and f.name != "given"]
        from_profile = [n for n in names if n in table]
        out |= {"profile": self.profile} | {n: getattr(self, n) for n in from_profile}
        taken = self._experiment_fields() | set(from_profile) | set(NOT_RECORDED)
        return out | {n: getattr(self, n) for n in names if n not in taken}

    def describe(self) -> list[str]:
        """The chapter's own lines after "ran with" (what its configuration means)."""
        return []

    def summary(self) -> str:
        """The "ran with" line (data, profile, parameters changed from the notebook's defaults) and
        the chapter's own lines."""
        return "\n".join([cbparams.describe(self.notebook, self.given)] + self.describe())


@dataclass(frozen=True, kw_only=True)
class TrainingChapter(Chapter):
    """A chapter that trains: its experiment configuration is built, and so validated, with it."""

    experiment: ExperimentConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiment", self.make_experiment())

    def make_experiment(self) -> ExperimentConfig:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class DataChapter(Chapter):
    notebook: ClassVar[str] = "00_data"
    data: str
    montage_per_class: int
    check_models: list[str]
    drr: bool
    seed: int


@dataclass(frozen=True, kw_only=True)
class EncryptionChapter(Chapter):
    notebook: ClassVar[str] = "01_encryption"
    data: str
    block_size: int
    block_sizes: list[int]
    strength: int
    strengths: list[int]
    swap: bool
    images_per_class: int
    throughput_images: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class ClassificationChapter(Chapter):
    notebook: ClassVar[str] = "02_classification"
    models_to_run: list[str]
    weights: str
    data: str
    domains: list
    key_mode: str
    strength: int
    swap: bool
    image_size: int
    trainable: str
    epochs: int
    batch_size: int
    lr: float
    train_per_class: int | None
    val_per_class: int | None
    test_per_class: int | None
    seed: int
    progress: bool
    regime_sweep: str
    sweep: str
    gpu_sweep: str
    results_name: str
    experiments: tuple[ExperimentConfig, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from . import classificationstudy as cs

        kw = {n: getattr(self, n) for n in ("weights", "data", "domains", "strength", "swap", "key_mode",
                                            "image_size", "trainable", "epochs", "batch_size", "lr",
                                            "train_per_class", "val_per_class", "test_per_class", "seed")}
        object.__setattr__(self, "experiments", tuple(cs.config_for(self.profile, m, **kw) for m in self.models_to_run))

    def record(self) -> dict:
        """The first model's configuration and the models (every model shares the rest)."""
        return self.experiments[0].record() | {"models": self.models_to_run}

    def describe(self) -> list[str]:
        from ..learning import train

        weights = ", ".join(c.weights for c in self.experiments)
        return ([f"profile {self.profile}, device {train.device_for()}, weights {weights}; what differs from Table IV:"]
                + [f"  - {line}" for line in self.experiments[0].differences_from_paper()])


@dataclass(frozen=True, kw_only=True)
class RetrievalChapter(TrainingChapter):
    notebook: ClassVar[str] = "03_retrieval"
    model: str
    weights: str
    data: str
    block_size: int
    domains: list
    strength: int
    swap: bool
    key_mode: str
    k: int
    n_queries: int
    ks: list[int]
    seed: int
    progress: bool
    results_name: str

    def make_experiment(self) -> ExperimentConfig:
        from . import retrievalstudy as rs

        return rs.config_for(self.profile, self.model, weights=self.weights, data=self.data, strength=self.strength,
                             swap=self.swap, key_mode=self.key_mode, seed=self.seed)

    def describe(self) -> list[str]:
        e = self.experiment
        return [f"profile {self.profile}: {self.model}, image size {e.image_size}, Psi trained as '{e.trainable}'; "
                f"protocol at {self.block_size}-px blocks, {self.key_mode} keys"]


@dataclass(frozen=True, kw_only=True)
class QuantizationChapter(TrainingChapter):
    notebook: ClassVar[str] = "04_quantization"
    weights: str
    data: str
    block_size: int
    strength: int
    calibrators: list[str]
    percentile: float
    finetune_epochs: int
    calib_images: int
    seed: int
    progress: bool
    results_name: str

    def make_experiment(self) -> ExperimentConfig:
        from . import retrievalstudy as rs

        # the study quantizes a frozen VGG-16 trunk + a trained linear head
        return rs.config_for(self.profile, "vgg16", weights=self.weights, data=self.data, strength=self.strength,
                             seed=self.seed, trainable="head")

    def describe(self) -> list[str]:
        e = self.experiment
        last = "linear head on the frozen trunk" if e.trainable == "head" else "fc8"
        return [f"profile {self.profile}: VGG-16 ({e.weights} weights), {e.image_size} px, MTCE {self.block_size}-px "
                f"blocks, per-image keys; the last layer is the {last}"]


@dataclass(frozen=True, kw_only=True)
class SecurityChapter(Chapter):
    notebook: ClassVar[str] = "05_security"
    data: str
    image_size: int
    block_sizes: list[int]
    strengths: list[int]
    jigsaw_images: int
    shared_images: int
    jigsaw_candidates: int
    show_block_size: int
    kpa_block_size: int
    kpa_strength: int
    kpa_image_size: int
    kpa_pairs: list[int]
    kpa_test_images: int
    probe_image_size: int
    probe_per_class: int | None
    probe_block_sizes: list[int]
    probe_strength: int
    attack_sweep: str
    seed: int
    results_name: str


@dataclass(frozen=True, kw_only=True)
class KeyAwareChapter(TrainingChapter):
    notebook: ClassVar[str] = "06_key_aware"
    model: str
    weights: str
    data: str
    block_size: int
    negpos: bool
    fresh_keys: int
    image_size: int
    epochs: int
    k: int
    seed: int
    results_name: str

    def make_experiment(self) -> ExperimentConfig:
        from . import keyawarestudy as ks

        return ks.config_for(self.profile, model=self.model, weights=self.weights, data=self.data,
                             block_size=self.block_size, negpos=self.negpos, fresh_keys=self.fresh_keys,
                             image_size=self.image_size, epochs=self.epochs, seed=self.seed)

    def describe(self) -> list[str]:
        e = self.experiment
        return [f"profile {self.profile}: {self.model}, {e.image_size} px, blocks of {self.block_size} px = patches, "
                f"negative-positive {self.negpos}; frozen trunk + linear head ({e.epochs} epochs); shared key "
                f"derived from seed {self.seed}"]


@dataclass(frozen=True, kw_only=True)
class ScorecardChapter(Chapter):
    notebook: ClassVar[str] = "99_scorecard"


#: notebook -> its configuration class
CHAPTERS: dict[str, type[Chapter]] = {c.notebook: c for c in (
    DataChapter, EncryptionChapter, ClassificationChapter, RetrievalChapter, QuantizationChapter, SecurityChapter,
    KeyAwareChapter, ScorecardChapter)}


def build(notebook: str, values: dict) -> Chapter:
    """The chapter's configuration from parameter values (the notebook's defaults for those not
    given): checked and converted, the profile's value for each one left None."""
    if notebook not in CHAPTERS:
        raise cbparams.ParameterError(f"no chapter {notebook!r}; chapters: {', '.join(CHAPTERS)}")
    given = cbparams.coerce(notebook, cbparams.declared(notebook) | dict(values))
    table = profiles.PROFILES.get(notebook, {}).get(given["profile"], {})
    resolved = {n: (table[n] if v is None and n in table else v) for n, v in given.items()}
    return CHAPTERS[notebook](**resolved, given=given)


def configure(notebook: str, namespace: dict) -> Chapter:
    """A running notebook's configuration from its own ``namespace`` (``globals()``): its parameters
    are checked and converted in place (:func:`cbirlib.studies.parameters.apply`), then
    :func:`build` turns them into the chapter's dataclass."""
    cbparams.apply(notebook, namespace)
    return build(notebook, {n: namespace[n] for n in cbparams.declared(notebook) if n in namespace})
