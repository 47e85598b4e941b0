"""The launch seam (issue 28; docs/backends.md): a typed :class:`~.job.Job`, the
:class:`~.backends.Backend` protocol with one module per backend (:mod:`.sagemaker`,
:mod:`.batch_array`, :mod:`.batch_service`, registered in :data:`.backends.REGISTRY`), and
the one create -> wait -> fail over -> new attempt decision (:mod:`.driver`) that the
deferrable training operator and the blocking Batch array child both call.

Nothing here is imported when the DAG file is parsed: the operator imports it when a try
starts.
"""
