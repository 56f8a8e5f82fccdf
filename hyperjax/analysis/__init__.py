"""The AIB evaluation protocol and diagnostics (DMA*-SH the authors'
`dmash/informativeness/metrics.py`; arXiv 2602.06550 v2, Tables 2 and 9; arXiv 2602.06550 v2,
Appendix A).

* ``stats``: normalised scores, IQM and stratified bootstrap CIs (rliable), relative gains by
  regime and overlap class;
* ``probe`` (JAX, compiled): z of windows from evaluation episodes, shadow gradients;
* ``representation`` (numpy): KSG informativeness, variability, representation overlap, the
  three-term variance decomposition, cosine matrices;
* ``report`` / ``plots`` / ``study``: the markdown report and PNG figures of a study.
"""
