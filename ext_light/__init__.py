"""The toolkit's parts that need neither torch nor BasicSR: file formats, atomic writes, image files, a
parallel map, the bundled photos and the launcher of ``ext/train.py``.

``import ext`` applies the package's BasicSR patches and imports every component (torch, torchvision,
BasicSR: about 4 s and 1.2 GB per process). The data scripts and their worker processes, and the code
that only launches training in a subprocess, import this package instead (a fraction of a second, no
torch); ``ext`` imports the same modules from here, so each rule (an LMDB key, the texture score, the
inpainting box, an atomic write) has one implementation. Modules here import nothing of ``ext``, torch or
BasicSR (``tests/test_ext_light.py`` checks it).
"""
