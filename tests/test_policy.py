"""Trained policies: ``load_policy`` from a CLI run reproduces the CLI's last evaluation in a
``lax.scan`` loop written here, and ``make_policy`` serves every preset."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax import checkpoint, methods, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loaded_policy_reproduces_the_clis_last_evaluation(tiny_dma_sh_run):
    """The CLI's last evaluation, step by step with the loaded policy: the same resets (the
    evaluation's key, kept in the train state), K warm-up steps from K x (s0', 0, s0'), a reset
    to the episode's start, T steps. DI is deterministic and the batch is the same, so the
    returns are equal (tolerance 1e-4: metrics.jsonl rounds to 4 decimals)."""
    cli_run = tiny_dma_sh_run
    params, policy = hj.load_policy(cli_run)
    prog = hj.make_program(hj.Config(env="di", algo="dma_sh", total_steps=20, eval_every=10,
                                     learning_starts=100, eval_episodes=1))
    state, _ = checkpoint.restore(os.path.join(cli_run, "checkpoints"),
                                  run.abstract_state(prog, 1))
    k_eval = state.eval_key[0]
    env, K, T = prog.env, policy.warmup_steps, prog.env.episode_length
    ctx = jnp.asarray(prog.sets.stacked().reshape(-1, 2))  # [60, 2]: train, in, out
    n = ctx.shape[0]

    def evaluate(params, key):
        k_reset, k_run = jax.random.split(key)
        keys = jax.random.split(k_reset, 3 * n)   # the rollout's batched resets
        reset = jax.vmap(env.reset)
        ep_state, ep_ts = reset(keys[:n], ctx)
        _, ts0 = reset(keys[n:2 * n], ctx)
        w_state, w_ts = reset(keys[2 * n:], ctx)
        step_keys = jax.random.split(k_run, K + T)

        def step(carry, key):
            s, obs, ps, ret = carry
            k_act, k_env = jax.random.split(key)
            action, ps = policy.act(params, ps, obs, k_act)
            s, ts = jax.vmap(env.step)(jax.random.split(k_env, n), s, action, ctx)
            return (s, ts.obs, ps, ret + ts.reward), None

        ps = policy.init(ts0.obs, ctx)
        (_, last_obs, ps, _), _ = jax.lax.scan(step, (w_state, w_ts.obs, ps, jnp.zeros(n)),
                                               step_keys[:K])
        ps = policy.reset(ps, last_obs, ep_ts.obs)
        (_, _, _, ret), _ = jax.lax.scan(step, (ep_state, ep_ts.obs, ps, jnp.zeros(n)),
                                         step_keys[K:])
        return ret

    ret = np.asarray(jax.jit(evaluate)(params, k_eval)).reshape(3, 20)
    rows = [json.loads(x) for x in open(os.path.join(cli_run, "metrics.jsonl"))]
    last = {r["split"]: r["returns"] for r in rows if r["step"] == 20}
    want = np.array([last[s] for s in ("train", "eval_in", "eval_out")])
    np.testing.assert_allclose(ret, want, atol=1e-4)
    # and the program's own evaluation with those parameters and that key
    direct = np.asarray(prog.evaluate(params, k_eval)).reshape(3, 20)
    np.testing.assert_array_equal(ret, direct)


@pytest.mark.parametrize("algo", ["dr", "concat", "da", "dma_pearl", "aware_hypernet_shared",
                                  "inferred_hypernet_all"])
def test_make_policy_serves_every_kind_of_preset(algo):
    prog = hj.make_program(hj.Config(algo=algo, total_steps=20, eval_every=10,
                                     learning_starts=100, eval_episodes=1))
    policy = hj.make_policy(prog.agent)
    params = prog.init(jax.random.PRNGKey(0)).agent.params
    obs = jnp.zeros((3, 4))
    ps = policy.init(obs, jnp.asarray(prog.sets.train[:3]))
    act = jax.jit(policy.act)
    a, ps = act(params, ps, obs + 0.1, jax.random.PRNGKey(1))
    a, ps = act(params, ps, obs + 0.2, jax.random.PRNGKey(2))
    assert a.shape == (3, 2) and bool(jnp.all(jnp.abs(a) <= 1))
    assert policy.warmup_steps == (24 if methods.get(algo).inferred else 0)
    if ps.window is not None:  # the last two observations closed two transitions
        np.testing.assert_allclose(ps.window.next_obs[:, -1], obs + 0.2)
        np.testing.assert_allclose(ps.window.obs[:, -1], obs + 0.1)


def test_load_policy_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a run directory"):
        hj.load_policy(str(tmp_path))
