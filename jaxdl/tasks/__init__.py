"""What differs between tasks, as plug-ins of the one training path (`jaxdl.train`).

A `Task` says where a run's examples come from, what the steps optimise (the objective), how a
trained model is scored on the test split and which plots it gets. Everything else — the
config, the build, the loop, checkpoints, the run directory — is the same for every task.

    classification   softmax cross-entropy, accuracy (+ flip test-time augmentation)
    segmentation     per-pixel classification of composed MNIST canvases, mean IoU
    multihead        several classification heads on one trunk, accuracy per head
"""
