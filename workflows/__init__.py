"""The durable flows (Temporal workflows); their steps are in ``activities``.

**Outside the sandbox.** The SDK runs a workflow in a sandbox that imports its module afresh for every
run and routes every activation, and every payload's serialization context, through ``exec`` of a code
string under swapped import machinery. For the high-volume workflows that costs more worker CPU than
their steps: py-spy of ``bench.push`` showed the sandbox in a third of the worker's samples, the send
activity and firebase-admin together in a seventh. So ``PushDeliveryWorkflow``, ``DmPushWorkflow`` and
``SignInWorkflow`` are defined with ``sandboxed=False``; the rest keep the sandbox. The guard is kept
where it catches mistakes: the replay tests (``tests/workflows/test_replay.py``) replay the recorded
histories of every workflow, these three included, inside ``SandboxedWorkflowRunner``, so a call the
sandbox refuses (time, randomness, I/O, a non-passthrough import) still fails a test before it can
reach a worker; ``test_the_replay_sandbox_catches_what_an_unsandboxed_workflow_must_not_do`` shows it
does for a workflow that reads the wall clock.
"""
