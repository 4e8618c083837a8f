"""What every host adapter shares and no host provides: a duck-typed batch read as the core's
:class:`~leignn_plugin.core.inputs.AtomGraph`, and the safe reader of checkpoint files.

Imports the core, the graph package and ``errors``; never a host framework.
"""
