"""The viewer's Flask layer: blueprints and request parsing. Imported by `viewer.create_app` only."""
