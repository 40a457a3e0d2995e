"""What a training method declares, and the loss context its phases see.

A *method* (StyleGAN2 teacher training, NICKEL & DiME, DGL-GAN, ...) is one module
``gancomp_jax/methods/<name>.py`` with a function ``build(config, env) -> Method``. The trainer
(``gancomp_jax.train``) owns everything else: mesh and shardings, input pipeline, optimisers,
checkpoints (exact resume, integrity checks), logging, sample grids, evaluation hooks, export.
Adding a method edits no trainer file.

A :class:`Method` declares

- ``networks``: role → :class:`NetworkSpec` (what the network is, where its weights come from,
  trainable or frozen, with an EMA or not, exported under which name);
- ``optimizers``: trainable role → :class:`OptimizerSpec` (Adam; NVlabs' lazy-regularisation
  correction ``lr·k/(k+1)``, ``β^(k/(k+1))`` is derived from the phases that update the role with
  an interval ``k > 1``);
- ``phases``: an ordered list of :class:`Phase` (name, the role(s) it updates, its loss, its
  interval). One training iteration runs every phase whose ``step % interval == 0`` in order,
  then updates the EMAs and increments the step;
- ``extra_state``: named arrays carried in the train state and checkpointed (e.g. ``pl_mean``).

The train state holds, keyed by role, the variables of trainable networks, their optimiser
states and EMAs (+ ``step``, ``extra`` and the root PRNG key). Frozen networks (teacher G/D,
feature networks) are loaded once, passed to the jitted steps as arguments, never
checkpointed, and recorded (source, sha256) in the checkpoint metadata; resuming with a
different frozen network is refused.

A phase's loss is ``loss_fn(ctx: Context) -> (loss_scalar, metrics_dict)``. The trainer
differentiates it with respect to the ``params`` of the roles the phase updates, multiplies
the loss by the phase interval (lazy regularisation, as NVlabs does), applies the role's
optimiser and writes back generator buffers (``w_avg``) and ``ctx.set_extra`` values.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from gancomp_jax.models import Discriminator, Generator, mix_styles, sample_mixing_cutoff

KINDS = ("generator", "discriminator", "module", "biggan_generator", "biggan_discriminator")
NOISE_MODES = ("independent", "shared")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """One network of a method.

    Attributes:
      kind: ``'generator'`` (:class:`~gancomp_jax.models.Generator`), ``'discriminator'``
        (:class:`~gancomp_jax.models.Discriminator`; the trainer sets its minibatch-std shards
        to the data-parallel device count), ``'biggan_generator'`` / ``'biggan_discriminator'``
        (:mod:`gancomp_jax.models.biggan`; variables ``{'params', 'buffers'}``; the method applies
        them itself and writes their updated buffers to ``ctx.new_buffers[role]``) or
        ``'module'`` (any flax module: give ``module`` and ``init``).
      config: ``GeneratorConfig`` / ``DiscriminatorConfig`` for the two StyleGAN2 kinds. May be
        None when ``source`` is a file or model directory: the stored description is used.
      source: where the weights come from:
        ``'init'`` — freshly initialised from the run's seed (NVlabs initialisation);
        a path to one of our model directories (``model.json``), a training run directory
        (its ``model/``; i.e. the output of a previous stage), an NVlabs ``.pkl`` or a
        rosinality ``.pt`` (converted in memory).
        Trainable networks read ``source`` only when a run starts; on resume their variables
        come from the checkpoint.
      source_name: the network's name inside ``source`` (e.g. ``'G_ema'``, ``'G'``, ``'D'``);
        default: the role name.
      trainable: trained by the phases (has an optimiser, is checkpointed) or frozen (loaded
        once, passed to the steps as an argument, recorded by sha256).
      ema: keep an exponential moving average of the variables (``Method.ema_kimg``,
        ``Method.ema_rampup``); buffers are copied from the trained network.
      export: name in the exported model directory (``WORKDIR/model``); None: not exported.
        The EMA, if any, is exported as ``export + '_ema'``.
      module: for ``kind='module'``: the flax module instance.
      init: for ``kind='module'``: ``key -> variables`` (``{'params': ...}``) when
        ``source='init'``; for files the trainer cannot read, a loader ``key -> variables``.
    """

    kind: str
    config: Any = None
    source: str = "init"
    source_name: str | None = None
    trainable: bool = True
    ema: bool = False
    export: str | None = None
    module: Any = None
    init: Callable[[jax.Array], Any] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"network kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "module" and (self.module is None or self.init is None):
            raise ValueError("a network of kind 'module' needs both `module` and `init`")
        if self.ema and not self.trainable:
            raise ValueError("only trainable networks keep an EMA")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """Adam for one trainable role (NVlabs: lr 0.0025, betas (0, 0.99), eps 1e-8).

    The lazy-regularisation correction is applied by the trainer from the phases (not here).
    """

    lr: float
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8


LossFn = Callable[["Context"], "tuple[jax.Array, Mapping[str, jax.Array]]"]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One optimisation step of an iteration.

    Attributes:
      name: unique within the method (``'Gmain'``, ``'Greg'``, ``'Dmain'``, ``'Dreg'`` ...).
      updates: the trainable role(s) whose ``params`` the loss is differentiated against and
        updated (several roles: e.g. NICKEL's D phase trains D_S and D_T together; each keeps
        its own optimiser).
      loss: ``ctx -> (loss, metrics)``; ``loss`` a float32 scalar, metrics a flat dict of
        scalars (logged as given, e.g. ``{'G/scores_fake': ...}``).
      interval: run when ``step % interval == 0``. With ``interval > 1`` the trainer multiplies
        the loss by ``interval`` and the optimisers of ``updates`` get NVlabs' lazy
        correction for that interval.
      loss_metric: the metric name of the (interval-scaled) loss; default ``'<name>/loss'``.
      key_id: the constant folded into the iteration key to make this phase's key
        (``fold_in(fold_in(root, step), key_id)``); default: the phase's position in the list.
        Set it when phases are optional so that the others keep their random streams.
    """

    name: str
    updates: tuple[str, ...] | str
    loss: LossFn
    interval: int = 1
    loss_metric: str | None = None
    key_id: int | None = None

    def __post_init__(self):
        if isinstance(self.updates, str):
            object.__setattr__(self, "updates", (self.updates,))
        if int(self.interval) < 1:
            raise ValueError(f"phase {self.name!r}: interval must be >= 1, got {self.interval}")

    @property
    def metric_name(self) -> str:
        return self.loss_metric or f"{self.name}/loss"


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything the trainer needs to know about a method (returned by ``build``).

    Attributes:
      networks: role → spec (roles are free names: ``'G'``, ``'D'``, ``'G_T'``, ``'G_S'`` ...).
      optimizers: one spec per trainable role.
      phases: in the order they run within an iteration.
      extra_state: name → initial array (checkpointed; read ``ctx.extra[name]``, write
        ``ctx.set_extra(name, value)`` from a phase's loss).
      style_mixing_prob: probability of style mixing in ``ctx.latents`` (NVlabs: 0.9).
      style_mixing_rounds: the crossover layer is drawn once per contiguous chunk of a latent
        draw, in this many chunks (1: once per batch, as NVlabs on one GPU with one round;
        NICKEL & DiME's released FFHQ-256 run draws it per ``batch_gpu`` = 8 samples: 8 rounds
        of a batch of 64).
      noise: ``'independent'`` (every generator role draws its own per-layer noise) or
        ``'shared'`` (all generator roles use the latents' noise key: teacher and student get
        the same noise where their layers have the same shapes).
      ema_kimg, ema_rampup: EMA half-life in kimg and NVlabs' ramp-up (None: none).
      ema_decay, ema_start_step: a fixed per-iteration decay instead (BigGAN-PyTorch's
        ``utils.ema``: ``ema = decay·ema + (1-decay)·net``, the EMA copies the network while
        the 1-based iteration is below ``ema_start_step``); None: the half-life rule.
      ema_buffers: average the buffers too (BigGAN-PyTorch averages its whole state dict);
        False: buffers are copied from the trained network.
      sample_network: the exported name of the network drawn in the sample grids
        (e.g. ``'G_ema'``).
      metadata: extra facts stored with the exported model.
      check_source: optional ``fn(data_source)`` the trainer calls once the data source is
        built (before anything is written); raises ValueError when the data cannot feed the
        method (e.g. a class-conditional method on unlabelled data).
    """

    networks: Mapping[str, NetworkSpec]
    optimizers: Mapping[str, OptimizerSpec]
    phases: Sequence[Phase]
    extra_state: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    style_mixing_prob: float = 0.0
    style_mixing_rounds: int = 1
    noise: str = "independent"
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    ema_decay: float | None = None
    ema_start_step: int = 0
    ema_buffers: bool = False
    sample_network: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check_source: Callable[[Any], None] | None = None

    def __post_init__(self):
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        ids = self.phase_key_ids()
        if len(set(ids)) != len(ids):
            raise ValueError(f"phase key ids must be unique, got {dict(zip(names, ids))}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if int(self.style_mixing_rounds) < 1:
            raise ValueError(f"style_mixing_rounds must be >= 1, got {self.style_mixing_rounds}")
        trainable = {r for r, s in self.networks.items() if s.trainable}
        for p in self.phases:
            for role in p.updates:
                if role not in trainable:
                    raise ValueError(f"phase {p.name!r} updates {role!r}, which is not a trainable network "
                                     f"(trainable: {sorted(trainable)})")
        if set(self.optimizers) != trainable:
            raise ValueError(f"optimizers must be given for exactly the trainable networks {sorted(trainable)}, "
                             f"got {sorted(self.optimizers)}")

    def phase_key_ids(self) -> list[int]:
        return [i if p.key_id is None else int(p.key_id) for i, p in enumerate(self.phases)]

    def reg_interval(self, role: str) -> int | None:
        """The lazy-regularisation interval of ``role``'s optimiser: the interval of the phases
        with ``interval > 1`` that update it (None if there are none)."""
        ks = {int(p.interval) for p in self.phases if role in p.updates and p.interval > 1}
        if len(ks) > 1:
            raise ValueError(f"role {role!r} is updated by phases with different intervals {sorted(ks)}; "
                             f"NVlabs' lazy-regularisation correction needs one")
        return ks.pop() if ks else None


@dataclasses.dataclass(frozen=True)
class BuildEnv:
    """What ``build(config, env)`` may need besides the config.

    Attributes:
      batch_size: global batch size (images per iteration over all devices).
      num_devices: data-parallel devices (the mesh size).
      mbstd_num_shards: minibatch-std shards the trainer gives discriminators.
      model: the resolved model preset (``.generator``, ``.discriminator`` configs) of
        ``config.model`` (for methods that train networks from scratch).
    """

    batch_size: int
    num_devices: int
    mbstd_num_shards: int
    model: Any = None


# ---------------------------------------------------------------------------------------------
# The loss context


def sample_labels(key, batch_size: int, c_dim: int):
    """One-hot labels drawn uniformly ``[N, c_dim]`` (None for unconditional models)."""
    if c_dim == 0:
        return None
    return jax.nn.one_hot(jax.random.randint(key, (batch_size,), 0, c_dim), c_dim)


def mixing_cutoffs(key: jax.Array, n: int, num_ws: int, prob: float, rounds: int = 1) -> jax.Array:
    """The crossover layer(s) of a batch of ``n``: a scalar for ``rounds == 1`` (NVlabs' one draw
    per batch), else ``[n]`` with one draw per contiguous chunk of ``n / rounds`` samples (draw
    ``i`` from ``fold_in(key, i)``). ``n`` must be a multiple of ``rounds``."""
    rounds = int(rounds)
    if rounds == 1:
        return sample_mixing_cutoff(key, num_ws, prob)
    if n % rounds:
        raise ValueError(f"style mixing per round: a batch of {n} does not split into {rounds} equal rounds")
    per = jnp.stack([sample_mixing_cutoff(jax.random.fold_in(key, i), num_ws, prob) for i in range(rounds)])
    return jnp.repeat(per, n // rounds)


def one_hot_labels(labels, c_dim: int):
    """Integer labels ``[N]`` → one-hot ``[N, c_dim]`` (None for unconditional models)."""
    if c_dim == 0:
        return None
    return jax.nn.one_hot(labels, c_dim)


def role_salt(name: str) -> int:
    """A stable integer for folding a name into a PRNG key."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclasses.dataclass
class Latents:
    """A shared draw of generator inputs (one per ``ctx.latents(name)``).

    ``z [N, z_dim]``, ``c [N, c_dim]`` or None, ``z_mix_key`` (second latents for style
    mixing are drawn from it), ``mix_key`` (the crossover layer is drawn from it: the same cutoff
    for every generator with the same ``num_ws``), ``noise_key`` (per-layer noise).
    """

    z: jax.Array
    c: Any
    z_mix_key: jax.Array
    mix_key: jax.Array
    noise_key: jax.Array
    batch_size: int


@dataclasses.dataclass
class Generated:
    """One generator pass: ``img [N, R, R, C]``, ``ws [N, num_ws, w_dim]`` (mixed), ``c``,
    ``features`` (``{'b{r}': block output [N, r, r, ch], 'img{r}': partial RGB}``), ``latents``."""

    img: jax.Array
    ws: jax.Array
    c: Any
    features: dict[str, jax.Array]
    latents: Latents


class Context:
    """What a phase's loss sees (built by the trainer inside the differentiated function).

    Attributes:
      step: the iteration (int32 scalar, traced).
      key: this phase's PRNG key, ``fold_in(fold_in(root, step), phase_index)``.
      batch: the real batch ``{'image': [B, R, R, C] in [-1, 1], 'label': [B] int}``.
      batch_size: the global batch size B.
      extra: the method's extra state (read only; write with :meth:`set_extra`).
      specs: role → :class:`NetworkSpec`; ``modules``: role → flax module.

    Generator passes are computed lazily and cached: within one phase,
    ``ctx.generate('G_T', features=True)`` and ``ctx.generate('G_S')`` use the same z, labels,
    second z and crossover layer (``ctx.latents('main')``), so teacher and student see the same
    inputs; asking twice for the same role costs one pass.
    """

    def __init__(self, *, step, key, batch, batch_size: int, variables: Mapping[str, Any],
                 modules: Mapping[str, Any], specs: Mapping[str, NetworkSpec], extra: Mapping[str, Any],
                 style_mixing_prob: float, noise: str, z_sharding=None, style_mixing_rounds: int = 1):
        self.step, self.key, self.batch, self.batch_size = step, key, batch, batch_size
        self.specs, self.modules, self.extra = specs, modules, dict(extra)
        self._variables = dict(variables)
        self.style_mixing_prob, self.noise, self._z_sharding = style_mixing_prob, noise, z_sharding
        self.style_mixing_rounds = int(style_mixing_rounds)
        self._latents: dict[str, Latents] = {}
        self._generated: dict[tuple, Generated] = {}
        self.new_buffers: dict[str, Any] = {}  # trainable generator role -> updated buffers
        self.new_extra: dict[str, Any] = {}

    # -- networks ---------------------------------------------------------------------------
    def variables(self, role: str) -> Any:
        """The role's variables as used in this phase (the differentiated params for roles the
        phase updates; buffers already updated by an earlier pass of this phase)."""
        if role not in self._variables:
            raise KeyError(f"no network {role!r} (have {sorted(self._variables)})")
        v = dict(self._variables[role])
        if role in self.new_buffers:
            v["buffers"] = self.new_buffers[role]
        return v

    def config(self, role: str):
        """The role's architecture config (``GeneratorConfig`` / ``DiscriminatorConfig`` / None)."""
        return getattr(self.modules[role], "config", None)

    def apply(self, role: str, *args, **kwargs):
        """``module.apply(variables, *args, **kwargs)`` for any role (e.g. a feature network)."""
        return self.modules[role].apply(self.variables(role), *args, **kwargs)

    # -- shared generator inputs ------------------------------------------------------------
    def latents(self, name: str = "main", batch_size: int | None = None, key: jax.Array | None = None,
                c_dim: int | None = None) -> Latents:
        """The named latent draw (created on first use, then shared by every generator role).

        Defaults: ``batch_size`` = the global batch, ``key`` = the phase key for ``'main'`` and
        ``fold_in(phase key, crc32(name))`` otherwise, ``c_dim`` = that of the first generator
        role. ``key`` is split into (z, labels, mixing z, crossover, noise) as before the redesign.
        """
        if name in self._latents:
            return self._latents[name]
        if key is None:
            key = self.key if name == "main" else jax.random.fold_in(self.key, role_salt(name))
        n = int(batch_size or self.batch_size)
        gens = [r for r, m in self.modules.items() if isinstance(m, Generator)]
        if not gens:
            raise ValueError("ctx.latents needs a generator network")
        cfg = self.modules[gens[0]].config
        kz, kc, kmix_z, kmix, knoise = jax.random.split(key, 5)
        z = jax.random.normal(kz, (n, cfg.z_dim), jnp.float32)
        if self._z_sharding is not None:
            z = jax.lax.with_sharding_constraint(z, self._z_sharding)
        c = sample_labels(kc, n, cfg.c_dim if c_dim is None else c_dim)
        lat = Latents(z=z, c=c, z_mix_key=kmix_z, mix_key=kmix, noise_key=knoise, batch_size=n)
        self._latents[name] = lat
        return lat

    def noise_key(self, role: str, latents: Latents) -> jax.Array:
        if self.noise == "shared":
            return latents.noise_key
        return jax.random.fold_in(latents.noise_key, role_salt(role))

    def map(self, role: str, latents: str | Latents = "main") -> jax.Array:
        """Mapping of the shared latents by generator ``role`` (style mixing applied):
        ``ws [N, num_ws, w_dim]``. Trainable roles update their ``w_avg`` as NVlabs does."""
        return self._mapped(role, latents)

    def _mapped(self, role, latents):
        lat = self.latents(latents) if isinstance(latents, str) else latents
        cache = ("map", role, id(lat))
        if cache in self._generated:
            return self._generated[cache]
        G = self.modules[role]
        v = self.variables(role)
        if self.specs[role].trainable:
            ws, upd = G.apply(v, lat.z, lat.c, update_emas=True, method=Generator.map, mutable=["buffers"])
            self.new_buffers[role] = upd["buffers"]
        else:
            ws = G.apply(v, lat.z, lat.c, method=Generator.map)
        if self.style_mixing_prob > 0:
            z2 = jax.random.normal(lat.z_mix_key, lat.z.shape, jnp.float32)
            ws2 = G.apply(v, z2, lat.c, method=Generator.map)
            cutoff = mixing_cutoffs(lat.mix_key, ws.shape[0], ws.shape[1], self.style_mixing_prob,
                                    self.style_mixing_rounds)
            ws = mix_styles(ws, ws2, cutoff)
        self._generated[cache] = ws
        return ws

    def synthesis_fn(self, role: str, latents: str | Latents = "main", noise_mode: str = "random"
                     ) -> Callable[[jax.Array], jax.Array]:
        """``ws -> images`` of generator ``role`` with this phase's noise (for path length)."""
        lat = self.latents(latents) if isinstance(latents, str) else latents
        G = self.modules[role]
        v = self.variables(role)
        nkey = self.noise_key(role, lat)

        def synth(ws, return_features=False):
            return G.apply(v, ws, noise_mode, return_features, method=Generator.synthesize,
                           rngs={"noise": nkey})
        return synth

    def generate(self, role: str, latents: str | Latents = "main", features: bool = False,
                 noise_mode: str = "random") -> Generated:
        """Generator ``role`` on the shared latents (lazily computed, cached per role, latents
        and noise mode). ``features`` only documents intent: the features are always returned
        (XLA drops what no loss uses)."""
        del features
        lat = self.latents(latents) if isinstance(latents, str) else latents
        cache = ("gen", role, id(lat), noise_mode)
        if cache not in self._generated:
            ws = self._mapped(role, lat)
            img, feats = self.synthesis_fn(role, lat, noise_mode)(ws, return_features=True)
            self._generated[cache] = Generated(img=img, ws=ws, c=lat.c, features=feats, latents=lat)
        return self._generated[cache]

    def discriminate(self, role: str, img: jax.Array, c=None, features: bool = False):
        """Discriminator ``role`` on ``img [N, R, R, C]``: logits ``[N, 1]`` (and features
        ``{'b{r}': block output}`` with ``features=True``)."""
        return self.modules[role].apply(self.variables(role), img, c, return_features=features)

    # -- reals, extra state, keys -----------------------------------------------------------
    @property
    def reals(self) -> jax.Array:
        return self.batch["image"]

    def real_labels(self, c_dim: int):
        """One-hot labels of the reals ``[B, c_dim]`` (None when ``c_dim == 0``)."""
        return one_hot_labels(self.batch["label"], c_dim)

    def set_extra(self, name: str, value) -> None:
        """Writes extra state ``name`` after this phase (stop-gradient applied)."""
        if name not in self.extra:
            raise KeyError(f"unknown extra state {name!r} (declared: {sorted(self.extra)})")
        self.new_extra[name] = jax.lax.stop_gradient(value)

    def rng(self, name: str) -> jax.Array:
        """An independent key for this phase, by name."""
        return jax.random.fold_in(self.key, role_salt(name))


__all__ = ["BuildEnv", "Context", "Generated", "Latents", "Method", "NetworkSpec", "OptimizerSpec", "Phase",
           "one_hot_labels", "sample_labels", "Discriminator", "Generator"]
