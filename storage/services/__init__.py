"""Services: every write of every front end goes through these, so the rules hold everywhere.

Services take an `AsyncSession`. A service that completes an operation a person is then told
about commits, so that nobody is told of something the store has not kept.
"""
