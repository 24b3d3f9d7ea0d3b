"""YAML configuration, validated at load into typed objects.

Unknown keys, wrong types and missing files fail at once with a message naming the file,
the key and the fix. Paths in the config are relative to the current working directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pnn.core import inputs
from pnn.core.errors import PnnError

log = logging.getLogger(__name__)


SEED_MAX = 2**32 - 1  # numpy's generators take seeds 0 .. 2**32 - 1

# Hidden-layer activations that keras.activations.get accepts and that work alone on a Dense
# layer; kept static so that loading a config never imports Keras (a test checks the list).
# Left out: 'threshold' (needs extra arguments) and 'glu' (halves the layer width).
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink",
)


def _types_in(annotation: Any) -> set[Any]:
    """Every type named in a field annotation, through unions, lists, dicts and Literal."""
    if typing.get_origin(annotation) is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    found = {annotation}
    for arg in typing.get_args(annotation):
        found |= _types_in(arg)
    return found


def _has_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(isinstance(v, bool) for v in value)
    return isinstance(value, bool)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML true/false would pass for 1/0 in a number field: refuse it in every section."""
        if info.field_name is None or not _has_bool(value):
            return value
        kinds = _types_in(cls.model_fields[info.field_name].annotation)
        if bool not in kinds and kinds & {int, float}:
            raise ValueError("true/false is not a number: write a number here")
        return value


class SumWeights(_Strict):
    """Where the sum of generated weights of a sample comes from (for cross-section scaling)."""

    branch: str | None = Field(None, description="branch summed over every entry of the sample")
    tree: str | None = Field(None, description="TTree or RNTuple holding that branch (NanoAOD: "
                              "Runs); default: the sample's tree")
    histogram: str | None = Field(None, description="histogram in every file (e.g. a cut flow)")
    bin: int | None = Field(None, ge=0, description="ROOT bin number of the histogram (1 = first)")

    @model_validator(mode="after")
    def _one_source(self) -> SumWeights:
        if (self.branch is None) == (self.histogram is None):
            raise ValueError("give exactly one of branch, histogram")
        if self.histogram is not None and (self.bin is None or self.tree is not None):
            raise ValueError("a histogram needs 'bin' (ROOT numbering, 1 = first) and no 'tree'")
        if self.branch is not None and self.bin is not None:
            raise ValueError("'bin' goes with 'histogram', not with 'branch'")
        return self


class Sample(_Strict):
    """One or more trees in one or more files that form a signal or background sample."""

    name: str = Field(description="sample name in the events table; '{tree}' or '{file}' in it "
                                  "makes one sample per tree or file")
    files: list[str] | dict[str, str] = Field(
        description="ROOT files or root:// URLs (globs allowed), or a mapping file (glob) -> tree")
    tree: str | None = Field(None, description="TTree or RNTuple name inside every file (the "
                             "kind is found from the file)")
    tree_regex: str | None = Field(None, description="read every TTree or RNTuple whose whole "
                                   "name matches")
    mass: float | None = Field(None, description="signal mass in GeV (constant for the sample)")
    mass_branch: str | None = Field(None, description="branch holding the signal mass in GeV")
    mass_regex: str | None = Field(
        None, description="regex whose first group is the mass in GeV, e.g. 'Xtohh(\\d+)'")
    mass_regex_on: Literal["tree", "file"] = Field("tree", description="what mass_regex reads")
    parameters: dict[str, float] | None = Field(
        None, description="signal parameter values, constant for the sample, e.g. {mX: 1000, "
        "mY: 300} (several parameters; a lone mass may use 'mass')")
    parameter_branches: dict[str, str] | None = Field(
        None, description="parameter -> branch holding its value, e.g. {mX: truth_mX}")
    parameter_regex: str | None = Field(
        None, description="regex with one named group per parameter, e.g. "
        "'XtoYH_mX(?P<mX>\\d+)_mY(?P<mY>\\d+)'")
    parameter_regex_on: Literal["tree", "file"] = Field(
        "tree", description="what parameter_regex reads")
    weight: str | None = Field(None, description="weight expression; default: the global one")
    selection: str | None = Field(None, description="cut ANDed with the global selection")
    cross_section: float | None = Field(
        None, gt=0, description="weight x cross_section x luminosity / sum_weights")
    sum_weights: SumWeights | None = Field(
        None, description="with cross_section: source of the sum of weights")
    event_number: str | None = Field(None, description="event-number branch; default: the global one")
    train: bool = Field(True, description="signal only: use this sample in training")

    @field_validator("files", mode="before")
    @classmethod
    def _one_file(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("tree_regex", "mass_regex", "parameter_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _trees(self) -> Sample:
        mapping = isinstance(self.files, dict)
        given = sum(x is not None for x in (self.tree, self.tree_regex)) + mapping
        if given != 1:
            raise ValueError(f"sample '{self.name}': give exactly one of tree, tree_regex, or "
                             "files as a mapping file -> tree")
        if self.mass_regex is not None and re.compile(self.mass_regex).groups < 1:
            raise ValueError(f"sample '{self.name}': mass_regex needs a group, e.g. 'Xtohh(\\d+)'")
        if (self.cross_section is None) != (self.sum_weights is None):
            raise ValueError(f"sample '{self.name}': cross_section and sum_weights go together")
        return self

    def parameter_sources(self) -> list[str]:
        """The keys that give this sample its signal parameters (one is expected)."""
        keys = ("mass", "mass_branch", "mass_regex", "parameters", "parameter_branches",
                "parameter_regex")
        return [k for k in keys if getattr(self, k) is not None]

    def constant_point(self, names: list[str]) -> tuple[float, ...] | None:
        """The sample's point when it is constant in the config (``mass`` or ``parameters``)."""
        if self.mass is not None:
            return (float(self.mass),)
        if self.parameters is not None:
            return tuple(float(self.parameters[n]) for n in names)
        return None

    def resolved_files(self) -> list[tuple[str, str | None]]:
        """Expand globs into (file, tree) pairs (tree None: use tree_regex); every entry must
        match at least one existing file."""
        pairs = self.files.items() if isinstance(self.files, dict) else [(f, self.tree)
                                                                          for f in self.files]
        out: list[tuple[str, str | None]] = []
        for pattern, tree in pairs:
            matches = inputs.expand(pattern)
            if not matches:
                hint = ("check the URL" if inputs.is_remote(pattern)
                        else "check the path, or run 'pnn generate' for the toy data")
                raise PnnError(f"sample '{self.name}': no file matches '{pattern}' ({hint})")
            out.extend((m, tree) for m in matches)
        return out

    def expanded_name(self, tree: str, file: str) -> str:
        """The sample name of one tree of one file ('{tree}' and '{file}' filled in)."""
        return self.name.replace("{tree}", tree).replace("{file}", Path(file).stem)

    def name_parts(self, name: str) -> dict[str, str] | None:
        """The '{tree}' and '{file}' values that make ``name`` from this sample's name
        template, or None when ``name`` is not one of its names."""
        pattern, seen = "", set()
        for part in re.split(r"(\{tree\}|\{file\})", self.name):
            if part in ("{tree}", "{file}"):
                key = part[1:-1]
                pattern += f"(?P={key})" if key in seen else f"(?P<{key}>.+)"
                seen.add(key)
            else:
                pattern += re.escape(part)
        found = re.fullmatch(pattern, name)
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}

    def owns(self, name: str) -> bool:
        """Whether ``name`` in the events table came from this sample."""
        parts = self.name_parts(name)
        if parts is None:
            return False
        tree = parts.get("tree")
        if tree is not None and self.tree_regex is not None:
            return re.fullmatch(self.tree_regex, tree) is not None
        if tree is not None and self.tree is not None:
            return tree == self.tree
        if tree is not None and isinstance(self.files, dict):
            return tree in self.files.values()
        return True


class Samples(_Strict):
    """Signal samples (one per mass point, or with a mass branch) and background samples."""

    signal: list[Sample] = Field(description="signal samples (keys: see samples.*[])")
    background: list[Sample] = Field(description="background samples (keys: see samples.*[])")
    data: list[Sample] = Field(
        [], description="recorded data (never trained on; blinded unless limits.observed)")

    @model_validator(mode="after")
    def _check(self) -> Samples:
        if not self.signal or not self.background:
            raise ValueError("need at least one signal and one background sample")
        names = [s.name for s in self.signal + self.background
                 if "{tree}" not in s.name and "{file}" not in s.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sample names must be unique, repeated: {dupes}")
        for s in self.background + self.data:
            if s.parameter_sources():
                raise ValueError(f"sample '{s.name}' cannot have a mass or signal parameters: "
                                 "only signal has them")
        clash = sorted({s.name for s in self.data} & set(names))
        if clash:
            raise ValueError(f"data sample names must differ from the simulated ones: {clash}")
        return self


class Generate(_Strict):
    """Parameters of the embedded toy (``pnn generate``)."""

    output: str = Field("data/toy", description="directory for signal.root and background.root")
    masses: list[float] = Field([500, 750, 1000, 1250, 1500], description="trained mass points, GeV")
    offgrid_masses: list[float] = Field(
        [625, 875, 1125, 1375], description="extra mass points for interpolation checks, GeV"
    )
    signal_events: int = Field(40_000, gt=0, description="events per signal mass point")
    background_events: int = Field(400_000, gt=0, description="background events in total")
    luminosity: float = Field(140.0, gt=0, description="integrated luminosity, fb^-1")
    objects: bool = Field(False, description="also write jagged jet branches (nJet, Jet_pt[], ...)")
    systematics: bool = Field(
        False, description="also write '<tree>__1up'/'__1down' trees with the energy-like branches "
        "scaled by 1 +- jes, and a 'weight_scale_up'/'_down' branch on the backgrounds")
    jes: float = Field(0.02, gt=0, lt=0.5, description="relative jet-energy-scale shift of the "
                       "variation trees")
    data: bool = Field(False, description="also write data.root: pseudo-data drawn fresh from the "
                       "toy densities, a Poisson number of events around the expected yield")
    data_seed: int = Field(1234, ge=0, le=2**32 - 1, description="seed of the pseudo-data")
    inject_mass: float | None = Field(None, gt=0, description="mass (GeV) of a signal injected "
                                      "into the pseudo-data")
    inject_xsec_fb: float | None = Field(None, gt=0, description="cross-section (fb) of the "
                                         "injected signal; default: the toy's benchmark")
    toy: Literal["mass", "xyh"] = Field(
        "mass", description="mass: X -> hh at one mass (masses, offgrid_masses); xyh: X -> Y H "
        "over an (mX, mY) grid (points, offgrid_points)")
    points: list[tuple[float, float]] | None = Field(
        None, description="xyh: trained (mX, mY) points in GeV; default: 5 x 5 values with "
        "mY < mX - 125")
    offgrid_points: list[tuple[float, float]] | None = Field(
        None, description="xyh: (mX, mY) points inside the grid, never trained on")


class Preprocessing(_Strict):
    folds: int = Field(2, ge=2, description="k in fold = EventNumber % k")
    drop_negative_weights: bool = Field(True, description="leave negative weights out of the loss")
    balance_signal: bool = Field(
        True, description="equal weight per mass point; total signal = total background"
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="share of training events held out for early stopping"
    )


class Training(_Strict):
    layers: list[int] = Field([32, 32, 32], description="widths of the hidden Dense layers")
    activation: str = Field(
        "relu", description="hidden-layer Keras activation, e.g. relu, tanh, elu, selu, gelu, swish")
    learning_rate: float = Field(0.1, gt=0, description="initial SGD learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(True, description="Nesterov momentum")
    schedule: Literal["inverse_time", "plateau"] = Field(
        "plateau", description="learning-rate schedule: inverse_time, lr / (1 + decay * step); "
        "plateau, lr times plateau_factor whenever the validation loss has not improved by "
        "min_delta for plateau_patience epochs")
    decay: float = Field(1e-4, ge=0, description="lr(t) = lr / (1 + decay * step) (inverse_time)")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="learning-rate factor (plateau)")
    plateau_patience: int = Field(
        4, gt=0, description="epochs without improvement before the learning rate drops (plateau)")
    min_delta: float = Field(
        2e-4, ge=0, lt=1, description="relative fall of the validation loss that counts as an "
        "improvement, for early stopping and the plateau schedule")
    conditioning: Literal["concat", "affine"] = Field(
        "concat", description="how the signal parameters enter: concat, as inputs beside the "
        "features (Baldi et al.); affine, each hidden layer's pre-activation h becomes "
        "(1 + gamma(theta)) * h + beta(theta) (Anzalone et al.)")
    ema: float = Field(
        0.0, ge=0, lt=1, description="momentum of an exponential moving average of the weights, "
        "swapped in after every epoch (0: off)"
    )
    batch_size: int = Field(1024, gt=0, description="events per gradient step")
    epochs: int = Field(200, gt=0, description="maximum number of epochs")
    patience: int = Field(
        12, gt=0, description="early stopping: epochs without an improvement of min_delta")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("layers must be a non-empty list of positive widths")
        return v

    @field_validator("activation")
    @classmethod
    def _activation(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation {v!r}: use one of {', '.join(ACTIVATIONS)}")
        return v


class SearchRange(_Strict):
    """One tuned training key: a range (low, high, optionally log) or a list of choices."""

    low: int | float | None = Field(None, description="lower end of the range")
    high: int | float | None = Field(None, description="upper end of the range")
    log: bool = Field(False, description="sample the range on a log scale (low > 0)")
    choices: list[Any] | None = Field(None, description="the values to choose from")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        ranged = self.low is not None or self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either low and high (a range) or choices")
        if ranged:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low >= self.high:
                raise ValueError(f"empty range: low {self.low!r} is not below high {self.high!r}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log range needs low > 0 (got {self.low!r})")
        else:
            if self.log:
                raise ValueError("'log' goes with a range, not with choices")
            if not self.choices:
                raise ValueError("choices must list at least one value")
            if len({json.dumps(c, sort_keys=True) for c in self.choices}) != len(self.choices):
                raise ValueError("choices must not repeat")
        return self


def _tunable(key: str, rng: SearchRange) -> None:
    """Check one search-space entry against the ``Training`` field it tunes (found from the
    schema, so every training key is tunable): a range only over a number field, each end
    and each choice a valid value of that field."""
    fields = Training.model_fields
    if key not in fields:
        raise ValueError(f"'{key}' is not a training key: use one of {', '.join(fields)}")
    values = rng.choices if rng.choices is not None else [rng.low, rng.high]
    if rng.choices is None:
        kinds = {typing.get_origin(k) or k for k in _types_in(fields[key].annotation)}
        if not kinds & {int, float} or kinds & {list, dict, str, bool}:
            raise ValueError(f"'{key}' is not a number: give it choices, not a range")
        if float not in kinds and not all(isinstance(v, int) for v in values):
            raise ValueError(f"'{key}' is an integer: give integer low and high")
    for value in values:
        try:
            Training.model_validate({key: value}, strict=True)
        except ValidationError as err:
            msg = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"'{key}': {value!r} is not a valid value ({msg})") from None


class Tune(_Strict):
    """Hyperparameter search over the training keys (``pnn tune``, Optuna)."""

    space: dict[str, SearchRange] = Field(
        description="training key -> {low, high, log} or {choices}, e.g. learning_rate: "
        "{low: 1.0e-3, high: 0.3, log: true}")
    trials: int = Field(20, ge=1, description="finished (complete or pruned) trials of the study, "
                        "over all workers")
    objective: Literal["val_loss", "asimov_z"] = Field(
        "val_loss", description="val_loss: fold 0's best weighted validation loss (minimised); "
        "asimov_z: mean best-cut Asimov Z over the trained masses on that validation share "
        "(maximised)")
    sampler: Literal["tpe", "random"] = Field(
        "tpe", description="Optuna sampler; worker i is seeded with seed + i")
    startup_trials: int = Field(5, ge=1, description="random trials before TPE models the space")
    pruning: bool = Field(True, description="stop hopeless trials early (median pruner on the "
                          "epoch validation losses)")
    workers: int = Field(1, ge=1, description="worker processes (pnn tune) or batch jobs "
                         "(pnn submit); --workers overrides it")
    threads: int = Field(1, ge=1, description="CPU threads of each worker (TensorFlow and BLAS)")
    stale_after: float = Field(
        7200.0, gt=0, description="seconds without an epoch report after which a running trial "
        "of a worker on another host counts as dead (marked failed)")

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, SearchRange]) -> dict[str, SearchRange]:
        if not v:
            raise ValueError("the search space is empty: add training keys to tune")
        for key, rng in v.items():
            _tunable(key, rng)
        return v


class Evaluation(_Strict):
    masses: list[float] | None = Field(None, description="masses to evaluate; default: all signal")
    points: list[dict[str, float]] | None = Field(
        None, description="points to evaluate with several parameters, e.g. [{mX: 1000, mY: "
        "300}]; default: every signal point")
    min_background_events: int = Field(
        20, ge=1, description="raw background MC events the cut must keep"
    )
    window_branch: str | dict[str, str] | None = Field(
        "FourBodyMass", description="variable of the mass-window baseline; with several "
        "parameters a mapping parameter -> variable (a box); null: no such baseline")
    ks_threshold: float = Field(0.01, gt=0, lt=1, description="warn when a KS p-value is below")
    min_signal_events: int = Field(100, ge=1, description="warn below this many raw signal MC events")
    min_effective_events: float = Field(
        25.0, gt=0, description="warn when (sum w)^2 / sum w^2 of signal or background is below"
    )
    mass_leak_tolerance: float = Field(
        0.02, gt=0, lt=0.5, description="warn when a mass-only classifier's AUC is off 0.5 by more"
    )
    allow_extrapolation: bool = Field(False, description="evaluate outside the trained range")
    jobs: int = Field(2, ge=1, description="points evaluated at once, each in its own process "
                      "(each holds the events table: 1 keeps one copy)")
    background_uncertainty: float = Field(
        0.0, ge=0, description="relative background uncertainty of the Asimov Z with uncertainty "
        "(z_bkg_uncertainty; Cowan 2012); 0 gives the plain Asimov Z")
    bootstrap_replicates: int = Field(
        100, ge=100, description="Poisson(1) bootstrap replicates behind every '_err' uncertainty "
        "(at least 100)")
    chunk_events: int = Field(
        1_000_000, ge=1, description="events scored at once; lower it to use less memory")


class Study(_Strict):
    """Physics validation (``pnn study``): baselines, interpolation, detuning, importance."""

    jobs: int = Field(2, ge=1, description="networks trained at once, each in its own process")
    threads_per_network: int = Field(
        1, ge=1, description="CPU threads of each training process (fixed, so numbers repeat)"
    )
    detuning_step: float | None = Field(
        None, gt=0, description="GeV between hypothesised masses; default: trained range / 20"
    )
    importance_repeats: int = Field(3, ge=1, description="permutations per feature and mass")
    bdt_max_iter: int = Field(100, ge=1, description="boosting iterations of the parametric BDT")
    bdt_learning_rate: float = Field(0.1, gt=0, description="learning rate of the parametric BDT")


class Apply(_Strict):
    fill: float = Field(-1.0, description="score of events that fail the global selection")


class Binning(_Strict):
    """How the score templates are binned (edges come from simulation, never from data)."""

    mode: Literal["auto", "edges"] = Field(
        "auto", description="'auto': ATLAS HH->bbtautau transformation D from the high-score end; "
        "'edges': the explicit edges")
    edges: list[float] | None = Field(None, description="bin edges of the discriminant ('edges')")
    z_s: float = Field(10.0, gt=0, description="transformation D: weight of the signal share")
    z_b: float = Field(10.0, gt=0, description="transformation D: weight of the background share")
    min_mc: int = Field(10, ge=1, description="background MC events each bin must hold")
    max_stat_error: float = Field(
        0.2, gt=0, description="largest relative MC uncertainty of the background in a bin")
    max_bins: int | None = Field(
        None, ge=2, description="cap on the number of bins (merges the low-score end first)")

    @model_validator(mode="after")
    def _edges(self) -> Binning:
        if self.mode == "edges":
            e = self.edges or []
            if len(e) < 2 or any(b <= a for a, b in itertools.pairwise(e)):
                raise ValueError("mode 'edges' needs at least two increasing edges")
        elif self.edges is not None:
            raise ValueError("'edges' goes with mode: edges")
        return self


class Systematic(_Strict):
    """One systematic uncertainty of the statistical model."""

    name: str = Field(description="nuisance parameter name")
    type: Literal["normsys", "lumi", "weight", "tree"] = Field(
        description="normsys: yield factors; lumi: luminosity; weight: alternative weight "
        "expressions; tree: alternative trees or files")
    samples: list[str] | None = Field(
        None, description="samples it acts on (names, or 'signal'); default: every simulated one")
    up: float | str | None = Field(
        None, description="normsys: factor (1.05); weight: expression; tree: tree name, "
        "'{tree}' stands for the nominal one (e.g. '{tree}__1up')")
    down: float | str | None = Field(None, description="as 'up'; omitted: symmetrised from 'up'")
    up_files: str | None = Field(
        None, description="tree: files of the up variation, '{file}' stands for the nominal path")
    down_files: str | None = Field(None, description="tree: files of the down variation")
    value: float | None = Field(None, gt=0, lt=1, description="lumi: relative uncertainty (0.017)")

    @model_validator(mode="after")
    def _kind(self) -> Systematic:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"systematic name '{self.name}': letters, digits and '_' only")
        if self.type == "lumi":
            if self.value is None or self.up is not None or self.down is not None:
                raise ValueError(f"lumi systematic '{self.name}' takes 'value' only, e.g. 0.017")
        elif self.type == "normsys":
            for side in (self.up, self.down):
                if side is not None and (isinstance(side, str) or not side > 0):
                    raise ValueError(f"normsys '{self.name}': up/down are positive factors")
            if self.up is None:
                raise ValueError(f"normsys '{self.name}' needs 'up' (and optionally 'down')")
        elif self.type == "weight":
            if not isinstance(self.up, str) or not (self.down is None or isinstance(self.down, str)):
                raise ValueError(f"weight systematic '{self.name}': up/down are expressions")
        elif self.type == "tree":
            if self.up is None and self.up_files is None:
                raise ValueError(f"tree systematic '{self.name}' needs 'up' (a tree name) or "
                                 "'up_files'")
            for side in (self.up, self.down):
                if side is not None and not isinstance(side, str):
                    raise ValueError(f"tree systematic '{self.name}': up/down are tree names")
        if self.type != "lumi" and self.value is not None:
            raise ValueError(f"'value' goes with type lumi, not {self.type}")
        if self.type != "tree" and (self.up_files or self.down_files):
            raise ValueError("'up_files'/'down_files' go with type tree")
        return self


class Limits(_Strict):
    """Binned templates, HistFactory workspaces and CLs upper limits (``pnn limits``)."""

    masses: list[float] | None = Field(None, description="masses; default: every evaluated mass")
    points: list[dict[str, float]] | None = Field(
        None, description="points with several parameters, e.g. [{mX: 1000, mY: 300}]; "
        "default: every evaluated point")
    methods: list[Literal["pnn", "window", "optimal"]] = Field(
        ["pnn", "window", "optimal"], description="discriminants to template (optimal: toy only)")
    binning: Binning = Binning()
    systematics: list[Systematic] = Field([], description="systematic uncertainties")
    staterror: bool = Field(True, description="MC statistical uncertainties (Barlow-Beeston lite)")
    observed: bool = Field(False, description="unblind: observed limits and p-values from data")
    cl: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the upper limits")
    mu_max: float | None = Field(None, gt=0, description="upper bound of mu; default: from the "
                                 "expected +2 sigma edge")
    jobs: int = Field(2, ge=1, description="processes that fit the statistical models at once")

    @model_validator(mode="after")
    def _unique(self) -> Limits:
        names = [s.name for s in self.systematics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"systematic names must be unique, repeated: {dupes}")
        return self


class Plots(_Strict):
    """The look of every figure: experiment label, centre-of-mass energy, luminosity, formats."""

    experiment: Literal["ATLAS", "CMS", "none"] = Field(
        "none", description="experiment name and mplhep style of the label: ATLAS, CMS or none")
    label: str = Field("Simulation Internal", description="text beside the experiment name")
    com: float | None = Field(13.6, gt=0, description="centre-of-mass energy in TeV on the "
                              "label; null leaves it out")
    luminosity: float | None = Field(
        None, gt=0, description="fb^-1 on the label; default: the top-level luminosity")
    formats: list[Literal["png", "pdf"]] = Field(
        ["png"], description="files written per plot: [png] or [png, pdf]")

    @field_validator("formats")
    @classmethod
    def _png_first(cls, v: list[str]) -> list[str]:
        if "png" not in v or len(set(v)) != len(v):
            raise ValueError("formats must include png (the report embeds it) and not repeat, "
                             "e.g. [png, pdf]")
        return v


class Cluster(_Strict):
    """Batch resources for ``pnn submit``; each key can be overridden on its command line."""

    scheduler: Literal["slurm", "htcondor", "local"] = Field(
        "local", description="default scheduler of pnn submit: slurm, htcondor or local")
    partition: str | None = Field(None, description="Slurm partition (--partition)")
    account: str | None = Field(
        None, description="Slurm account (--account); HTCondor AccountingGroup")
    time: str = Field("01:00:00", description="Slurm wall time per task, [D-]HH:MM:SS")
    memory: str = Field("4G", description="memory per task, e.g. 2G (--mem, request_memory)")
    cpus: int = Field(1, ge=1, description="CPUs per task (--cpus-per-task, request_cpus)")
    max_concurrent: int | None = Field(
        None, ge=1, description="tasks running at once (Slurm %K, HTCondor max_materialize, local pool)")
    job_flavour: str = Field("longlunch", description="HTCondor +JobFlavour (CERN batch queues)")
    slurm_directives: list[str] = Field([], description="extra '#SBATCH' options, e.g. '--qos=short'")
    htcondor_commands: list[str] = Field([], description="extra submit-description lines")
    setup: str | None = Field(
        None, description="shell line run before every task, e.g. 'source setup.sh'")
    files_per_job: int = Field(10, ge=1, description="input files per job (ingest, apply)")


class Config(_Strict):
    name: str = Field(description="run name, a plain folder name: outputs go to output_dir/name")
    output_dir: str = Field("runs", description="parent of the run directory")
    seed: int = Field(42, description=f"seed for every random choice, 0 to {SEED_MAX}")
    samples: Samples
    parameters: list[str] = Field(
        ["mass"], description="names of the signal parameters, the network's extra inputs, "
        "e.g. [mX, mY]; one parameter called mass by default")
    features: list[str] = Field(description="network inputs: branches, expressions or aliases")
    spectators: list[str] = Field([], description="branches carried into the table, not trained")
    aliases: dict[str, str] = Field(
        {}, description="output name -> branch or expression, usable in features/spectators")
    event_number: str = Field("EventNumber", description="branch with the event number")
    weight: str = Field("weight", description="per-event weight expression")
    selection: str | None = Field(None, description="global cut expression")
    luminosity: float | None = Field(
        None, gt=0, description="integrated luminosity for samples with a cross_section")
    object_fill: float = Field(0.0, description="value of x[k] when an event has no k-th object")
    non_finite: Literal["error", "drop", "fill"] = Field(
        "error", description="NaN/inf in a feature: fail naming it, drop the event, or fill")
    non_finite_fill: float = Field(0.0, description="value that replaces NaN/inf with 'fill'")
    generate: Generate | None = None
    preprocessing: Preprocessing = Preprocessing()
    training: Training = Training()
    evaluation: Evaluation = Evaluation()
    study: Study = Study()
    apply: Apply = Apply()
    limits: Limits = Limits()
    plots: Plots = Plots()
    tune: Tune | None = None
    cluster: Cluster = Cluster()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        """The run directory output_dir/name must stay inside output_dir."""
        if v.strip() in ("", ".") or ".." in v or any(c in v for c in "/\\\0"):
            raise ValueError("the run name must be a plain folder name, without '/', '\\', '..' "
                             "or a NUL byte, and not empty or '.': e.g. 'my_run'")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if not 0 <= v <= SEED_MAX:
            raise ValueError(f"the seed must be an integer from 0 to {SEED_MAX} (2**32 - 1)")
        return v

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("features must list at least one branch")
        if len(set(v)) != len(v):
            raise ValueError("features must not repeat")
        return v

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("parameters must name at least one signal parameter, e.g. [mass]")
        if len(set(v)) != len(v):
            raise ValueError("parameters must not repeat")
        bad = [n for n in v if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", n)]
        if bad:
            raise ValueError(f"parameter name {bad[0]!r} must be letters and digits, starting "
                             "with a letter, e.g. mX")
        reserved = [n for n in v if n in ("weight", "label", "sample") or n.startswith("pnn_")]
        if reserved:
            raise ValueError(f"parameter name {reserved[0]!r} is taken by the events table: "
                             "choose another")
        return v

    @model_validator(mode="after")
    def _signal_parameters(self) -> Config:
        """Every signal sample gives every parameter in exactly one way."""
        names = self.parameters
        one = names == ["mass"]
        for s in self.samples.signal:
            given = s.parameter_sources()
            if len(given) != 1:
                ways = ("mass, mass_branch, mass_regex, parameters, parameter_branches or "
                        "parameter_regex") if one else "parameters, parameter_branches or " \
                    "parameter_regex"
                raise ValueError(f"signal sample '{s.name}': give exactly one of {ways}")
            kind = given[0]
            if not one and kind.startswith("mass"):
                raise ValueError(f"signal sample '{s.name}': '{kind}' is for a lone mass; with "
                                 f"parameters {names} use parameters, parameter_branches or "
                                 "parameter_regex")
            mapping = {"parameters": s.parameters, "parameter_branches": s.parameter_branches}
            if kind in mapping and set(mapping[kind]) != set(names):
                raise ValueError(f"signal sample '{s.name}': {kind} gives {sorted(mapping[kind])}"
                                 f" but the parameters are {names}: give exactly those")
            if kind == "parameter_regex":
                groups = set(re.compile(s.parameter_regex).groupindex)
                if groups != set(names):
                    raise ValueError(f"signal sample '{s.name}': parameter_regex has the named "
                                     f"groups {sorted(groups)} but the parameters are {names}: "
                                     f"name one group per parameter, e.g. (?P<{names[0]}>\\d+)")
        ev = self.evaluation
        if ev.masses is not None and not one:
            raise ValueError(f"evaluation.masses is for a lone mass; with parameters {names} "
                             "use evaluation.points, e.g. [{" + ", ".join(
                                 f"{n}: ..." for n in names) + "}]")
        if ev.masses is not None and ev.points is not None:
            raise ValueError("give evaluation.masses or evaluation.points, not both")
        wb = ev.window_branch
        if isinstance(wb, dict) and set(wb) != set(names):
            raise ValueError(f"evaluation.window_branch gives {sorted(wb)} but the parameters "
                             f"are {names}: map each parameter to its window variable")
        if isinstance(wb, str) and not one and "window_branch" in ev.model_fields_set:
            raise ValueError("evaluation.window_branch: with several parameters map each to its "
                             "window variable, e.g. {" + ", ".join(f"{n}: ..." for n in names)
                             + "}")
        for p in ev.points or []:
            if set(p) != set(names):
                raise ValueError(f"evaluation.points: {p} must give exactly the parameters "
                                 f"{names}")
        if self.generate is not None and (self.generate.toy == "xyh") != (len(names) == 2):
            want = "[mX, mY]" if self.generate.toy == "xyh" else "[mass] (the default)"
            raise ValueError(f"generate.toy '{self.generate.toy}' writes a toy whose signal "
                             f"parameters are {want}: set parameters to match")
        return self

    @model_validator(mode="after")
    def _limit_points(self) -> Config:
        """limits.masses for a lone mass, limits.points (every parameter) for several."""
        names, lim = self.parameters, self.limits
        if lim.masses is not None and names != ["mass"]:
            raise ValueError(f"limits.masses is for a lone mass; with parameters {names} use "
                             "limits.points, e.g. [{" + ", ".join(f"{n}: ..." for n in names)
                             + "}]")
        if lim.masses is not None and lim.points is not None:
            raise ValueError("give limits.masses or limits.points, not both")
        for p in lim.points or []:
            if set(p) != set(names):
                raise ValueError(f"limits.points: {p} must give exactly the parameters {names}")
        return self

    @model_validator(mode="after")
    def _normalisation(self) -> Config:
        scaled = [s.name for s in self.samples.signal + self.samples.background if s.cross_section]
        if scaled and self.luminosity is None:
            raise ValueError(f"sample '{scaled[0]}' has a cross_section: set 'luminosity' too")
        return self

    @model_validator(mode="after")
    def _limits(self) -> Config:
        if self.limits.observed and not self.samples.data:
            raise ValueError("limits.observed is true but there is no data sample: add one under "
                             "samples.data, or keep the analysis blinded (observed: false)")
        simulated = self.samples.signal + self.samples.background
        if any("{" in s.name for s in simulated):
            return self  # names expand per tree or file: checked when the templates are built
        known = {s.name for s in simulated} | {"signal", "background"}
        for syst in self.limits.systematics:
            unknown = sorted(set(syst.samples or []) - known)
            if unknown:
                raise ValueError(f"limits.systematics '{syst.name}': no sample '{unknown[0]}': "
                                 f"use names from samples.signal/background, or 'signal'")
        return self

    @model_validator(mode="after")
    def _tune_defaults(self) -> Config:
        """The first trial is the config's own training settings: they must lie in the space."""
        for key, rng in (self.tune.space if self.tune else {}).items():
            own = getattr(self.training, key)
            inside = (own in rng.choices if rng.choices is not None
                      else own is not None and rng.low <= own <= rng.high)
            if not inside:
                raise ValueError(f"tune.space.{key}: the configured training.{key} {own!r} is "
                                 "outside the space: include it (the first trial runs the "
                                 "config's own settings)")
        return self

    _source: str = PrivateAttr("CONFIG")
    _output_override: str | None = PrivateAttr(None)

    @property
    def source(self) -> str:
        """The config file as given on the command line (for the commands that errors suggest)."""
        return self._source

    def command(self, verb: str) -> str:
        """The pnn command line that runs ``verb`` on this config (named by error messages)."""
        out = f" -o {self._output_override}" if self._output_override else ""
        return f"pnn {verb} {self._source}{out}"

    def expression(self, name: str) -> str:
        """The branch or expression behind a feature or spectator name (its alias resolved)."""
        return self.aliases.get(name, name)

    def trained_sample(self, name: str) -> bool:
        """Whether events of sample ``name`` (as in the events table) enter training."""
        return any(s.owns(name) and s.train for s in self.samples.signal)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    def signal_points(self, *, trained_only: bool = False) -> list[tuple[float, ...]]:
        """Constant points of the signal samples (sorted, unique)."""
        found = {s.constant_point(self.parameters) for s in self.samples.signal
                 if s.train or not trained_only}
        return sorted(p for p in found if p is not None)

    def evaluation_points(self) -> list[tuple[float, ...]] | None:
        """The points that ``evaluation.masses`` or ``evaluation.points`` ask for, if any."""
        if self.evaluation.masses:
            return sorted((float(m),) for m in self.evaluation.masses)
        if self.evaluation.points:
            return sorted(tuple(float(p[n]) for n in self.parameters)
                          for p in self.evaluation.points)
        return None

    def limit_points(self) -> list[tuple[float, ...]] | None:
        """The points that ``limits.masses`` or ``limits.points`` ask for, if any."""
        if self.limits.masses:
            return sorted((float(m),) for m in self.limits.masses)
        if self.limits.points:
            return sorted(tuple(float(p[n]) for n in self.parameters) for p in self.limits.points)
        return None

    def signal_masses(self, *, trained_only: bool = False) -> list[float]:
        """Constant masses of the signal samples (sorted, unique)."""
        return [p[0] for p in self.signal_points(trained_only=trained_only)
                if len(p) == 1]

    def digest(self) -> str:
        """Stable hash of the validated config, stored in model metadata."""
        text = self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _DuplicateKeyError(Exception):
    def __init__(self, key: str, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last).

    Every node gets its dotted key path before its children are built, so the error names
    the full key, e.g. 'training.epochs' or 'samples.signal.0.tree'.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._paths: dict[int, str] = {}

    def _child(self, node: yaml.Node, part: str) -> str:
        parent = self._paths.get(id(node), "")
        return f"{parent}.{part}" if parent else part

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self._child(node, key_node.value)
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _DuplicateKeyError(key, seen[key_node.value], line)
            seen[key_node.value] = line
            self._paths[id(value_node)] = key
        return super().construct_mapping(node, deep=deep)

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list:
        for i, item in enumerate(node.value):
            self._paths[id(item)] = self._child(node, str(i))
        return super().construct_sequence(node, deep=deep)


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        fix = "remove it or fix its spelling (see the config reference in README.md)"
        return f"{path}: unknown key '{loc}': {fix}"
    if kind == "missing":
        return f"{path}: missing required key '{loc}': add it (see README.md)"
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{path}: key '{loc}': {msg}{shown}"


def _short_line(line: str) -> str:
    return line if len(line) <= 60 else line[:60] + "..."


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML config; ``overrides`` replace top-level keys (CLI options)."""
    path = Path(path)
    if not path.is_file():
        raise PnnError(f"config file '{path}' not found: pass the path to a YAML config")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PnnError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                       f"{exc.start}): save the file as UTF-8") from None
    except OSError as exc:
        raise PnnError(f"config file '{path}' cannot be read ({exc.strerror}): "
                       "check its permissions") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise PnnError(f"{path}: key '{exc.key}' appears twice (lines {exc.first} and "
                       f"{exc.second}): keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        line = text.splitlines()[mark.line].strip() if mark and mark.line < len(
            text.splitlines()) else ""
        if "flow" in str(getattr(exc, "context", "") or "") or re.search(r":\s*\[", line):
            shown = f" ({_short_line(line)})" if line else ""
            raise PnnError(f"{path}: not valid YAML{where}{shown}: an expression "
                           "with brackets, commas or colons inside a [...] list must be quoted, "
                           "e.g. features: ['Muon_pt[0]', x], or given one per line as '- ...'"
                           ) from None
        raise PnnError(f"{path}: not valid YAML{where}: fix the syntax") from None
    if not isinstance(raw, dict):
        raise PnnError(f"{path}: the config must be a mapping of keys to values")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise PnnError(_format_error(path, err)) from None
    cfg._source = str(path)
    cfg._output_override = (overrides or {}).get("output_dir")
    return cfg


def _describe(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = info.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type)
                    and issubclass(a, BaseModel)), None)
        if sub is not None and name not in ("signal", "background", "sum_weights"):
            rows.append((key, "", info.description or f"section, see {key}.*"))
            rows.extend(_describe(sub, key + (".<key>." if typing.get_origin(ann) is dict else ".")))
            continue
        default = "required" if info.is_required() else repr(info.get_default())
        rows.append((key, default, info.description or ""))
    return rows


def reference_markdown() -> str:
    """Markdown table of every config key, its default and its meaning (for the README)."""
    rows = _describe(Config, "")
    rows += [(f"samples.*[].{k}", d, m) for k, d, m in _describe(Sample, "")]
    rows += [(f"samples.*[].sum_weights.{k}", d, m) for k, d, m in _describe(SumWeights, "")]
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {('`' + d + '`') if d and d != 'required' else d} | {m} |" for k, d, m in rows]
    return "\n".join(lines)
