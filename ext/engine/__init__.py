"""The package's own training engine, run inside BasicSR's training loop.

BasicSR's loop stays the host's (``basicsr.train.train_pipeline``); :mod:`ext.engine.patching` is the one
table of what this package puts into it. The modules, bottom to top:

- :mod:`~ext.engine.dist`: rank helpers (work with and without a process group);
- :mod:`~ext.engine.seeding`: per-draw seeds, validation that keeps the training streams;
- :mod:`~ext.engine.progress`: what the running job knows (loader length, model, iteration);
- :mod:`~ext.engine.bad_data`: unreadable training files, named, skipped and limited;
- :mod:`~ext.engine.sampling`: the per-draw seeded training set and the resumable sampler;
- :mod:`~ext.engine.resume`: exact ``.state`` files and finding the newest usable one;
- :mod:`~ext.engine.schedules`: the option file's scheduler and lr applied on resume (``train.restart_scheduler``);
- :mod:`~ext.engine.nan_guard`: a step with a non-finite loss or gradient is skipped; too many in a row stop the run;
- :mod:`~ext.engine.stopping`: signals, guards, bad data and out-of-memory stop every rank after the same iteration;
- :mod:`~ext.engine.patching`: which BasicSR functions are replaced, by what, and why.
"""
