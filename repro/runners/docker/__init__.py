"""The Docker runner: stages in containers of a local or remote Docker engine.

``runner`` drives the engine through docker-py; ``engine`` asks it one question over its unix
socket without docker-py (for ``repro status``); ``reaper`` removes a dead repro's containers;
``client`` imports docker-py the fast way. Nothing is imported here: ``repro status`` passes
through this package on its quick path.
"""
