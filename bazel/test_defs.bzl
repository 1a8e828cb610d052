"""Test rules of syncpool."""

def syncpool_cc_test(name, both_modes = False, env = {}, **kwargs):
    """A cc_test; with both_modes, also `<name>_perthread`, the same test with SYNCPOOL_MODE=perthread.

    The plain test runs the caches in the mode the process picks (rseq per-CPU where glibc
    registered its area), the twin in the per-thread mode, so both run in every configuration.
    """
    native.cc_test(name = name, env = env, **kwargs)
    if both_modes:
        twin_env = dict(env)
        twin_env["SYNCPOOL_MODE"] = "perthread"
        native.cc_test(name = name + "_perthread", env = twin_env, **kwargs)
