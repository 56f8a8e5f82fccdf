"""Why HyperZero does not learn on the stiffness specs (run after run.sh): at its released
init, the raw spec (700-1300 N·m/rad, fed as released) drives the generated tanh policy deep
into saturation (zero gradient), unlike a spec of order 1. Prints |z|, the median |pre-tanh|
on recorded observations and the share above 9 (tanh = +-1 in float32)."""
import jax, jax.numpy as jnp, numpy as np
from hyperjax.hypogen import models as M
m = M.make_model("hyperzero", 42, 7, use_td=False)
specs = jnp.array([[700.0], [1000.0], [1300.0]])
obs = jnp.asarray(np.load("runs/table2_slice/dataset.npz")["obs"][5, :2, :5].reshape(-1, 42))
p = m.init(jax.random.key(123), specs, jnp.zeros(10, jnp.int32), obs, jnp.zeros((10, 7)), obs)
z = m.apply(p, specs, method=lambda mod, s: mod.embed(s))
w = m.apply(p, specs, method="generate")
(w1, b1), (w2, b2) = w
h = jax.nn.relu(jnp.einsum("oi,bi->bo", w1[1], obs) + b1[1])
pre = jnp.einsum("oi,bi->bo", w2[1], h) + b2[1]
print("|z| mean", float(jnp.abs(z).mean()), "pre-tanh |.| median", float(jnp.median(jnp.abs(pre))), "share |pre|>9:", float((jnp.abs(pre) > 9).mean()))
z1 = m.apply(p, jnp.array([[1.0]]), method=lambda mod, s: mod.embed(s))
print("for spec 1.0: |z| mean", float(jnp.abs(z1).mean()))
