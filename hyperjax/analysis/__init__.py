"""The AIB evaluation protocol and diagnostics (DMA*-SH notes §5, §6, §8).

* ``stats``: normalised scores, IQM and stratified bootstrap CIs (rliable), relative gains by
  regime and overlap class;
* ``probe`` (JAX, compiled): z of windows from evaluation episodes, shadow gradients;
* ``representation`` (numpy): KSG informativeness, variability, representation overlap, the
  three-term variance decomposition, cosine matrices;
* ``report`` / ``plots`` / ``study``: the markdown report and PNG figures of a study.
"""
