"""The AIB evaluation protocol and diagnostics (DMA*-SH the authors'
`dmash/informativeness/metrics.py`; arXiv 2602.06550 v2, Tables 2 and 9; arXiv 2602.06550 v2,
Appendix A).

* ``stats``: normalised scores, IQM and stratified bootstrap CIs (rliable), the paper's
  relative gains (ratios of IQMs) with CIs and probabilities of improvement, by regime and
  overlap class;
* ``collect``: runs and studies read back from disk and merged into one study (the report of
  ``experiments.report`` and of the study command);
* ``probe`` (JAX, compiled): z of windows from evaluation episodes, shadow gradients;
* ``representation`` (numpy): KSG informativeness, variability, representation overlap, the
  three-term variance decomposition, cosine matrices;
* ``report`` / ``plots`` / ``study``: the markdown report and PNG figures of a study.
"""
