"""The shared project store: models, the programme's rules and the services every front end uses."""
