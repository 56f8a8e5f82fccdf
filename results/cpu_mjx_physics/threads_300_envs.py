"""A batch of N envs of a task (an evaluation's 300 on BallInCup) stepped 100 times with
uniform-random actions in one jitted scan, the env axis sharded over every CPU device JAX has;
best of 2 calls. Run under different XLA_FLAGS (results/cpu_mjx_physics/threads.txt):

    python results/cpu_mjx_physics/threads_300_envs.py ball_in_cup 300
"""
import os, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import hyperjax as hj
name = sys.argv[1]; n = int(sys.argv[2])
env = hj.make_env(name)
devs = jax.devices()
mesh = Mesh(np.array(devs), ("env",))
sh = NamedSharding(mesh, P("env"))
ctx = jax.device_put(jnp.asarray(np.resize(np.asarray(hj.context_sets(name).train), (n, len(env.factors)))), sh)
keys = jax.device_put(jax.random.split(jax.random.PRNGKey(0), n), sh)
steps = 100
@jax.jit
def run(keys, ctx):
    st, _ = jax.vmap(env.reset)(keys, ctx)
    def body(st, k):
        a = jax.random.uniform(k, (n, env.action_dim), minval=-1.0, maxval=1.0)
        a = jax.lax.with_sharding_constraint(a, sh)
        st, ts = jax.vmap(env.step)(keys, st, a, ctx)
        return st, ts.reward
    return jax.lax.scan(body, st, jax.random.split(keys[0], steps))[1].sum()
run(keys, ctx).block_until_ready()
best = 1e9
for i in range(2):
    t0 = time.perf_counter(); run(keys, ctx).block_until_ready(); best = min(best, time.perf_counter() - t0)
print(name, n, len(devs), "devices", os.environ.get("XLA_FLAGS"), f"{best/steps*1e3:.2f} ms per vector step", flush=True)
