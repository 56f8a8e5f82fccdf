"""Trained policies: ``load_policy`` from a CLI run reproduces the CLI's last evaluation through
``hj.evaluate``, and ``make_policy`` serves every preset."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax import checkpoint, methods, parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loaded_policy_reproduces_the_clis_last_evaluation(tiny_dma_sh_run):
    """The CLI's last evaluation through the library's ``hj.evaluate`` with the loaded policy:
    the same resets (the evaluation's key, kept in the train state), K warm-up steps from
    K x (s0', 0, s0'), a reset to the episode's start, T steps. DI is deterministic and the
    batch is the same, so the returns are equal (tolerance 1e-4: metrics.jsonl rounds to 4
    decimals)."""
    cli_run = tiny_dma_sh_run
    params, policy = hj.load_policy(cli_run)
    prog = hj.make_program(hj.Config(env="di", algo="dma_sh", total_steps=20, eval_every=10,
                                     learning_starts=100, eval_episodes=1))
    state, _ = checkpoint.restore(os.path.join(cli_run, "checkpoints"),
                                  parallel.abstract_state(prog, 1))
    k_eval = state.eval_key[0]
    ctx = jnp.asarray(prog.sets.stacked().reshape(-1, 2))  # [60, 2]: train, in, out
    ret = np.asarray(jax.jit(lambda p, k: hj.evaluate(policy, p, prog.env, ctx, k))(
        params, k_eval)).reshape(3, 20)
    rows = [json.loads(x) for x in open(os.path.join(cli_run, "metrics.jsonl"))]
    last = {r["split"]: r["returns"] for r in rows if r["step"] == 20}
    want = np.array([last[s] for s in ("train", "eval_in", "eval_out")])
    np.testing.assert_allclose(ret, want, atol=1e-4)
    # a checkpoint that is not there: a ValueError naming the steps that are
    with pytest.raises(ValueError, match=r"no checkpoint at step 99 in .*; there are \[2, 3\]"):
        hj.load_policy(cli_run, step=99)
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


def test_evaluate_lays_out_episodes_as_the_cli_and_refuses_bad_input():
    """``hj.evaluate`` repeats each context ``episodes`` times in place, as the CLI's
    evaluation batch does, so its [N, E] returns equal ``Program.evaluate``'s split rows."""
    prog = hj.make_program(hj.Config(algo="dr", total_steps=20, eval_every=10,
                                     learning_starts=100, eval_episodes=2))
    params = prog.init(jax.random.PRNGKey(0)).agent.params
    policy = hj.make_policy(prog.agent)
    key = jax.random.PRNGKey(3)
    ctx = jnp.asarray(prog.sets.stacked().reshape(-1, 2))
    ret = hj.evaluate(policy, params, prog.env, ctx, key, episodes=2)
    assert ret.shape == (60, 2)
    np.testing.assert_array_equal(ret.reshape(3, 20, 2), prog.evaluate(params, key))
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        hj.evaluate(policy, params, prog.env, ctx, key, episodes=0)
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        hj.evaluate(policy, params, prog.env, ctx, key, episodes=np.bool_(True))
    np.testing.assert_array_equal(  # a NumPy integer is an integer
        hj.evaluate(policy, params, prog.env, ctx, key, episodes=np.int64(2)), ret)
    with pytest.raises(ValueError, match=r"contexts must be \[N, n_factors\]"):
        hj.evaluate(policy, params, prog.env, ctx[0], key)
