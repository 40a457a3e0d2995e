"""Image editing with a generator: projection of real images into W / W+ (NVlabs' projector),
style mixing, latent interpolation, and the teacher-vs-student editing comparison.

Modules: :mod:`.targets` (reading and checking target images), :mod:`.perceptual` (projection
losses), :mod:`.projector` (the optimisation), :mod:`.style_mixing`, :mod:`.interpolate`,
:mod:`.outputs` (output-folder markers, animated GIF/MP4 writing). Jobs live in
:mod:`gancomp_jax.jobs` (``project``, ``style_mixing``, ``interpolate``, ``edit_report``).
"""
