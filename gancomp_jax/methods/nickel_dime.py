"""NICKEL & DiME (Yeo, Jang, Yoo, ECCV 2024) as released, plus DiME as a true kernel MMD.

``config.method.name = 'nickel_dime'``. Networks (roles):

- ``G_T`` frozen teacher generator (``teacher``'s ``G_ema``);
- ``G_S`` the student generator (``student``'s ``G``, e.g. a pruned model directory), trained
  with an EMA; exported as ``G`` / ``G_ema``;
- ``D_S`` the student's discriminator: full teacher width and freshly initialised as released
  (``d_student='fresh'``), or the teacher's D (``'teacher'``), or the student directory's D
  (``'pruned'``); exported as ``D``;
- ``D_T`` the teacher's discriminator, trained further by its own Adam in the D phases
  (``train_teacher_d``; frozen otherwise); exported as ``D_T``;
- ``A`` a 1×1 adapter (only when D_S's and G_T's feature widths differ), trained with D_S;
- ``E_<name>`` frozen embedders for DiME and ``dime_stats`` (the global moments / bank file).

One iteration (released ``training/loss_DD.py``)::

    Gmain (every step)      softplus(-D_S(G_S(z))) + softplus(-D_T(G_S(z))) + L_DiME
    Greg  (every 4)         path length on G_S (weight 2, batch B/2)
    Dmain (every step)      D_S: logistic + fm_weight·L_FM ;  D_T: logistic  (both stepped)
    Dreg  (every 16)        R1 (γ/2) on D_S and on D_T

``L_FM`` (:func:`gancomp_jax.losses.nickel.nickel_feature_matching`) compares the 4-level Haar
high bands of G_T's block ``b{R/4}`` output (detached) with D_S's block ``b{R/2}`` output on
G_T's images (paper256: ``b64`` and ``b128``, 256×64×64 each).

DiME forms (``dime.form``):

- ``'moments'`` — *the released code*: ``Σ_e λ_e (mean_d|E_b f − g1| + mean_d|E_b f² − g2|)``
  against the global moments file (``dime.global_stats``, see ``tools/dime_stats.py``), or,
  with no file, against the teacher's moments on the same latents ("without global
  statistics"). λ = 20 DINO, 15 CLIP.
- ``'mmd'`` — *ours* (the paper's stated idea): unbiased MMD² between the student's embeddings
  and the teacher's embeddings of the same batch (``reference='teacher'``, paired U-statistic
  since both share z), and/or rows drawn from the stored bank (``'bank'``, ``'both'``).

Accumulation rounds: the released run (batch 64 on 4 GPUs, ``batch_gpu`` = 8) processes each
phase in rounds of 8 samples, and each round draws its own style-mixing crossover layer and
moves the path-length mean with its own 4 Greg samples. ``mixing_rounds`` / ``pl_rounds``
(default 1: once per batch; ``experiments/nickel_dime.py:released`` sets 8) reproduce that on
contiguous chunks of the global batch. Remaining difference: the release keeps one path-length
mean per GPU (4 unsynchronised means, each moved by 2 rounds per Greg); ours is one mean moved
by all 8 rounds in order (what one GPU running all 8 rounds computes).

Per-device batch and moments: the moments are estimated on ``dime.groups`` contiguous chunks
of the *global* batch and the per-chunk losses averaged; the released FFHQ-256 run computes
them on ``batch_gpu`` = 8 samples per accumulation round (batch 64 → ``groups = 8``). Because
chunks are defined on the global batch, the result does not depend on how many devices share
the batch (1 and 4 devices agree).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gancomp_jax.losses import logistic_d_loss, r1_penalty
from gancomp_jax.losses.dime import dime_loss, moment_loss, raw_moments
from gancomp_jax.losses.mmd import mmd2_unbiased, sample_bank
from gancomp_jax.losses.nickel import nickel_blocks, nickel_feature_matching, nickel_g_adversarial
from gancomp_jax.methods._distil_common import (Adapter, FunctionModule, generator_block_width,
                                                path_length_phase_loss, stored_config)
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase

D_STUDENT_CHOICES = ("fresh", "teacher", "pruned")
FORMS = ("moments", "mmd")
REFERENCES = ("teacher", "bank", "both")

# kind -> loader(path, preprocess) -> (params, apply_fn); tests may add small random embedders.
EMBEDDER_FACTORIES: dict[str, Any] = {}


def default_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "nickel_dime"
    m.teacher = ""                 # teacher model (dir / run dir / .pkl / .pt) with G_ema and D
    m.teacher_g_name = "G_ema"
    m.teacher_d_name = "D"
    m.student = ""                 # student (pruned) model with G (and D for d_student='pruned')
    m.student_g_name = "G"
    m.d_student = "fresh"          # fresh (released) | teacher | pruned
    m.nickel = True                # False: DiME only (D_S alone; no D_T term, no feature matching)
    m.train_teacher_d = True       # released: D_T trained by its own Adam in the D phases
    m.fm_weight = 10.0
    m.fm_levels = 4
    m.fm_g_block = ""              # '' : b{R/4}
    m.fm_d_block = ""              # '' : b{R/2}
    m.noise = "independent"        # per-layer noise of G_T and G_S ('shared': the same draw)
    m.mixing_rounds = 1            # style-mixing crossover drawn per batch / mixing_rounds samples (released: 8)
    m.pl_rounds = 1                # path-length mean updated per pl_batch / pl_rounds samples (released: 8)
    m.dime = ml_collections.ConfigDict()
    m.dime.enabled = True          # False: NICKEL only
    m.dime.form = "moments"        # moments (released) | mmd (ours)
    m.dime.use = ("dino", "clip")  # which entries of dime.embedders are used
    m.dime.global_stats = ""       # .pt/.npz of global_{e}_{first,second} (+ bank_{e}); '' : teacher batch
    m.dime.groups = 8              # moment chunks of the global batch (released: batch / batch_gpu)
    m.dime.kernel = "gaussian"     # mmd: gaussian | polynomial
    m.dime.reference = "teacher"   # mmd: teacher | bank | both
    m.dime.bank_batch = 64         # mmd: bank rows per step
    m.dime.scales = (0.25, 0.5, 1.0, 2.0, 4.0)
    m.dime.degree = 3
    m.dime.coef0 = 1.0
    m.dime.embedders = ml_collections.ConfigDict({
        "dino": {"kind": "dino_rn50", "weights": "", "weight": 20.0, "preprocess": "released", "blocks": ()},
        "clip": {"kind": "clip_rn50", "weights": "", "weight": 15.0, "preprocess": "released", "blocks": ()},
    })
    return m


def _get(config, key, default):
    v = config.get(key, None)
    return default if v is None else v


def resolve(config) -> None:
    m = config.method
    if m.d_student not in D_STUDENT_CHOICES:
        raise ValueError(f"config.method.d_student must be one of {D_STUDENT_CHOICES}, got {m.d_student!r}")
    if m.dime.form not in FORMS:
        raise ValueError(f"config.method.dime.form must be one of {FORMS}, got {m.dime.form!r}")
    if m.dime.reference not in REFERENCES:
        raise ValueError(f"config.method.dime.reference must be one of {REFERENCES}, got {m.dime.reference!r}")
    if not m.nickel and not m.dime.enabled:
        raise ValueError("config.method.nickel and config.method.dime.enabled are both off: nothing to distil")
    if m.dime.enabled:
        for name in m.dime.use:
            if name not in m.dime.embedders:
                raise ValueError(f"config.method.dime.use names {name!r}, which is not in config.method.dime.embedders "
                                 f"({sorted(m.dime.embedders)})")
        if m.dime.form == "mmd" and m.dime.reference != "teacher" and not m.dime.global_stats:
            raise ValueError("config.method.dime.reference uses the bank but config.method.dime.global_stats "
                             "(a file with bank_<embedder> entries) is not set")


def _embedder_roles(m, teacher_d_cfg, dtype=jnp.float32, dims: dict | None = None):
    """``{name: (role, NetworkSpec, feature_fn(ctx, img) -> [N, d])}`` for the used embedders
    (CLIP / DINO computed in ``dtype``; float32 outputs).

    ``dims`` (if given) is filled with ``name -> d`` (None where it cannot be worked out), so
    that a statistics file can be checked against the embedders before it is read.
    """
    out = {}
    dims = {} if dims is None else dims
    for name in m.dime.use:
        e = m.dime.embedders[name]
        role = f"E_{name}"
        if e.kind == "teacher_d":
            # The frozen teacher discriminator's features: spatial means of the chosen blocks.
            blocks = tuple(e.get("blocks", ()) or ())
            if not blocks:
                blocks = ("b16", "b8") if teacher_d_cfg.img_resolution >= 16 else ("b8",)
            spec = NetworkSpec("discriminator", None, source=m.teacher, source_name=m.teacher_d_name,
                               trainable=False)

            def feat(ctx, img, role=role, blocks=blocks):
                _, f = ctx.discriminate(role, img, None, features=True)
                return jnp.concatenate([jnp.mean(f[b].astype(jnp.float32), axis=(1, 2)) for b in blocks], axis=1)
            try:  # block b{r} outputs width(r / 2) channels
                dims[name] = sum(teacher_d_cfg.width(int(b[1:]) // 2) for b in blocks)
            except (ValueError, IndexError, TypeError):
                dims[name] = None
        else:
            if not e.weights:
                raise ValueError(f"config.method.dime.embedders.{name}.weights is not set (the {e.kind} weight file)")
            if e.kind in EMBEDDER_FACTORIES:
                kw = {} if dtype == jnp.float32 else {"dtype": dtype}
                params, apply_fn = EMBEDDER_FACTORIES[e.kind](e.weights, e.preprocess, **kw)
            else:
                try:
                    from gancomp_jax.nets.embedders import load_embedder
                except ImportError as err:
                    raise ValueError(f"embedder kind {e.kind!r} needs gancomp_jax.nets.embedders ({err})") from None
                params, apply_fn = load_embedder(e.kind, e.weights, preprocess=e.preprocess, dtype=dtype)
            dims[name] = _output_dim(apply_fn, params, teacher_d_cfg.img_resolution)
            spec = NetworkSpec("module", source=e.weights, trainable=False, module=FunctionModule(apply_fn, e.kind),
                               init=(lambda p: (lambda key: {"params": p}))(params))

            def feat(ctx, img, role=role):
                return ctx.apply(role, img).astype(jnp.float32)
        out[name] = (role, spec, feat)
    return out


def _output_dim(apply_fn, params, resolution: int) -> int | None:
    """The embedding size ``d`` of ``apply_fn(params, images [1, R, R, 3]) -> [1, d]`` (traced, not run)."""
    try:
        out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32))
        return int(out.shape[-1]) if len(out.shape) == 2 else None
    except Exception:  # noqa: BLE001 - an embedder that cannot be traced here is checked against the generic bound
        return None


def _stats_spec(path: str, dims) -> NetworkSpec:
    """The statistics file as a frozen network; entries checked against ``dims`` (name -> d) before reading."""
    from gancomp_jax.losses.dime_stats import load_stats

    stats = {k: jnp.asarray(v) for k, v in load_stats(path, dict(dims)).items()}
    return NetworkSpec("module", source=path, trainable=False, module=FunctionModule(lambda p: p, "dime_stats"),
                       init=lambda key: {"params": stats})


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    m = config.method
    B = env.batch_size
    g_t_cfg = stored_config(m.teacher, m.teacher_g_name, "config.method.teacher")
    d_t_cfg = stored_config(m.teacher, m.teacher_d_name, "config.method.teacher")
    stored_config(m.student, m.student_g_name, "config.method.student")
    R = g_t_cfg.img_resolution
    c_dim = g_t_cfg.c_dim
    lr = float(_get(config, "lr", 0.0025))
    adam = OptimizerSpec(lr=lr, betas=tuple(float(b) for b in _get(config, "betas", (0.0, 0.99))),
                         eps=float(_get(config, "adam_eps", 1e-8)))
    r1_gamma = float(_get(config, "r1_gamma", 1.0))
    pl_weight = float(_get(config, "pl_weight", 2.0))
    pl_batch = max(1, B // int(_get(config, "pl_batch_shrink", 2)))
    use_nickel = bool(m.nickel)
    train_dt = use_nickel and bool(m.train_teacher_d)

    networks = {
        "G_T": NetworkSpec("generator", None, source=m.teacher, source_name=m.teacher_g_name, trainable=False),
        "G_S": NetworkSpec("generator", None, source=m.student, source_name=m.student_g_name, ema=True, export="G"),
    }
    if m.d_student == "fresh":
        networks["D_S"] = NetworkSpec("discriminator", d_t_cfg, source="init", export="D")
        d_s_cfg = d_t_cfg
    elif m.d_student == "teacher":
        networks["D_S"] = NetworkSpec("discriminator", None, source=m.teacher, source_name=m.teacher_d_name, export="D")
        d_s_cfg = d_t_cfg
    else:
        d_s_cfg = stored_config(m.student, "D", "config.method.student")
        networks["D_S"] = NetworkSpec("discriminator", None, source=m.student, source_name="D", export="D")
    if use_nickel:
        networks["D_T"] = NetworkSpec("discriminator", None, source=m.teacher, source_name=m.teacher_d_name,
                                      trainable=train_dt, export="D_T" if train_dt else None)

    # NICKEL feature matching: blocks and (if needed) the adapter.
    g_block, d_block = nickel_blocks(R)
    g_block = m.fm_g_block or g_block
    d_block = m.fm_d_block or d_block
    use_adapter = False
    if use_nickel:
        g_width = generator_block_width(g_t_cfg, int(g_block[1:]))
        d_width = d_s_cfg.width(int(d_block[1:]) // 2)
        if int(g_block[1:]) != int(d_block[1:]) // 2:
            raise ValueError(f"config.method.fm_g_block={g_block} and fm_d_block={d_block} do not give "
                             f"feature maps of the same size")
        use_adapter = g_width != d_width
        if use_adapter:
            adapter = Adapter(g_width)
            networks["A"] = NetworkSpec(
                "module", source="init", module=adapter,
                init=lambda key: adapter.init(key, jnp.zeros((1, 1, 1, d_width), jnp.float32)))

    # DiME.
    dime_on = bool(m.dime.enabled) and len(m.dime.use) > 0
    from gancomp_jax.methods.cagc import feature_dtype

    embedder_dims: dict = {}
    embedders = _embedder_roles(m, d_t_cfg, feature_dtype(env), embedder_dims) if dime_on else {}
    for name, (role, spec, _) in embedders.items():
        networks[role] = spec
    has_stats = dime_on and bool(m.dime.global_stats)
    if has_stats:
        networks["dime_stats"] = _stats_spec(m.dime.global_stats, embedder_dims)
    weights = {name: float(m.dime.embedders[name].weight) for name in embedders}
    groups = int(m.dime.groups)
    form, kernel, reference = m.dime.form, m.dime.kernel, m.dime.reference
    mmd_kw = dict(scales=tuple(float(s) for s in m.dime.scales), degree=int(m.dime.degree),
                  coef0=float(m.dime.coef0))
    bank_batch = int(m.dime.bank_batch)
    fm_weight, fm_levels = float(m.fm_weight), int(m.fm_levels)

    def dime(ctx: Context, s_img):
        feats = {name: fn(ctx, s_img) for name, (_, _, fn) in embedders.items()}
        metrics = {}
        need_teacher = (form == "moments" and not has_stats) or (form == "mmd" and reference in ("teacher", "both"))
        t_feats = {}
        if need_teacher:
            t_img = jax.lax.stop_gradient(ctx.generate("G_T").img)
            t_feats = {name: jax.lax.stop_gradient(fn(ctx, t_img)) for name, (_, _, fn) in embedders.items()}
        if form == "moments":
            if has_stats:
                total, terms = dime_loss(feats, ctx.variables("dime_stats")["params"], weights, groups)
            else:
                total, terms = jnp.float32(0.0), {}
                for name, f in feats.items():
                    t1, t2 = raw_moments(t_feats[name], groups)
                    l1, l2 = moment_loss(f, t1, t2, groups)
                    terms[f"{name}_first"], terms[f"{name}_second"] = l1, l2
                    total = total + weights[name] * (l1 + l2)
            metrics.update({f"G_S/dime_{k}": v for k, v in terms.items()})
            return total, metrics
        total = jnp.float32(0.0)
        for name, f in feats.items():
            val = jnp.float32(0.0)
            if reference in ("teacher", "both"):
                v = mmd2_unbiased(f, t_feats[name], kernel, paired=True, **mmd_kw)
                metrics[f"G_S/mmd_teacher_{name}"] = v
                val = val + v
            if reference in ("bank", "both"):
                bank = ctx.variables("dime_stats")["params"].get(f"bank_{name}")
                if bank is None:
                    raise ValueError(f"{m.dime.global_stats}: no bank_{name} entry (compute it with --bank)")
                ref = sample_bank(bank, ctx.rng(f"bank_{name}"), bank_batch)
                v = mmd2_unbiased(f, ref, kernel, **mmd_kw)
                metrics[f"G_S/mmd_bank_{name}"] = v
                val = val + v
            total = total + weights[name] * val
        return total, metrics

    def g_main(ctx: Context):
        s = ctx.generate("G_S")
        ds_logits = ctx.discriminate("D_S", s.img, s.c)
        metrics = {"G_S/scores_fake_D_S": jnp.mean(ds_logits)}
        if use_nickel:
            dt_logits = ctx.discriminate("D_T", s.img, s.c)
            adv = jnp.mean(nickel_g_adversarial(ds_logits, dt_logits))
            metrics["G_S/scores_fake_D_T"] = jnp.mean(dt_logits)
        else:
            adv = jnp.mean(jax.nn.softplus(-ds_logits))
        metrics["G_S/adversarial"] = adv
        loss = adv
        if dime_on:
            d_loss, d_metrics = dime(ctx, s.img)
            metrics.update(d_metrics)
            metrics["G_S/dime"] = d_loss
            loss = loss + d_loss
        return loss, metrics

    def d_main(ctx: Context):
        s = ctx.generate("G_S")
        fake = jax.lax.stop_gradient(s.img)
        real_c = ctx.real_labels(c_dim)
        g_s, r_s = logistic_d_loss(ctx.discriminate("D_S", fake, s.c), ctx.discriminate("D_S", ctx.reals, real_c))
        loss = jnp.mean(g_s) + jnp.mean(r_s)
        metrics = {"D_S/logistic": loss}
        if use_nickel:
            t = ctx.generate("G_T")
            _, d_feats = ctx.discriminate("D_S", jax.lax.stop_gradient(t.img), t.c, features=True)
            pred = d_feats[d_block]
            if use_adapter:
                pred = ctx.apply("A", pred)
            fm = nickel_feature_matching(t.features[g_block], pred, None, fm_levels)
            loss = loss + fm_weight * fm
            metrics["D_S/feature_match"] = fm
        if train_dt:
            g_t, r_t = logistic_d_loss(ctx.discriminate("D_T", fake, s.c), ctx.discriminate("D_T", ctx.reals, real_c))
            dt = jnp.mean(g_t) + jnp.mean(r_t)
            metrics["D_T/logistic"] = dt
            loss = loss + dt
        return loss, metrics

    def d_reg(ctx: Context):
        c = ctx.real_labels(c_dim)
        pen, _ = r1_penalty(lambda x: ctx.discriminate("D_S", x, c), ctx.reals)
        loss = jnp.mean(pen * (r1_gamma / 2))
        metrics = {"D_S/r1_penalty": jnp.mean(pen)}
        if train_dt:
            pen_t, _ = r1_penalty(lambda x: ctx.discriminate("D_T", x, c), ctx.reals)
            loss = loss + jnp.mean(pen_t * (r1_gamma / 2))
            metrics["D_T/r1_penalty"] = jnp.mean(pen_t)
        return loss, metrics

    d_roles = ("D_S",) + (("D_T",) if train_dt else ()) + (("A",) if use_adapter else ())
    phases = [Phase("Gmain", "G_S", g_main, loss_metric="G_S/loss", key_id=0)]
    if pl_weight > 0 and int(_get(config, "pl_interval", 4)) > 0:
        phases.append(Phase("Greg", "G_S", path_length_phase_loss("G_S", pl_weight, pl_batch,
                                                                  float(_get(config, "pl_decay", 0.01)),
                                                                  rounds=int(m.get("pl_rounds", 1))),
                            interval=int(_get(config, "pl_interval", 4)), loss_metric="G_S/reg_loss", key_id=1))
    phases.append(Phase("Dmain", d_roles, d_main, loss_metric="D/loss", key_id=2))
    if r1_gamma > 0 and int(_get(config, "r1_interval", 16)) > 0:
        phases.append(Phase("Dreg", tuple(r for r in d_roles if r != "A"), d_reg,
                            interval=int(_get(config, "r1_interval", 16)), loss_metric="D/reg_loss", key_id=3))
    trainable = [r for r, s in networks.items() if s.trainable]
    return Method(
        networks=networks,
        optimizers={r: adam for r in trainable},
        phases=phases,
        extra_state={"pl_mean": jnp.zeros((), jnp.float32)},
        style_mixing_prob=float(_get(config, "style_mixing_prob", 0.9)),
        style_mixing_rounds=int(m.get("mixing_rounds", 1)),
        noise=m.noise,
        ema_kimg=float(_get(config, "ema_kimg", 20.0)),
        ema_rampup=float(_get(config, "ema_rampup", 0.0)) or None,
        sample_network="G_ema",
        metadata={"method": "nickel_dime", "nickel": use_nickel, "dime": dime_on,
                  "dime_form": form if dime_on else None, "teacher": m.teacher, "student": m.student},
    )
