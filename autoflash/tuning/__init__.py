"""Tuning: an Optuna study per problem key, objective = compile -> verify -> time.

Processes (design.md section 7):

    main (tuner.py): Optuna studies, ask/tell, storage, progress -- no CUDA here
      |-- compile pool (compile_pool.py, N CPU processes): config -> render -> NVRTC -> cubin + report
      '-- runner (autoflash.runner, one subprocess): cubin -> verify vs reference -> time

Modules: keys (StudyKey, TuneOptions), space (search space and Optuna params),
compile_pool, storage (Optuna storages and samplers), shared (a study shared by
several workers), finalize (re-timing finalists, tuned entries), tuner (the loop),
listing (trial tables and logs), compile_only, entries (`autoflash verify`), campaign.
Nothing here knows an operation's fields: it asks the Operation (autoflash.ops).
"""
