"""Profiles: the TOML description of a run (profile.py), the words it uses
(vocabulary.py), and the library of profiles on disk (library.py)."""
