"""Alert storms: when a receiver's backlog would take longer than its window to drain, relay folds it into summaries.

`stage` is the periodic check that opens, folds and ends a storm (beside the other periodic stages, above
delivery); `fold` (which notifications a fold takes, a summary's lane and group) and `summary` (how a summary
reads) are values that the store and the channels use, so they import nothing above relay.alerts and
relay.templating. Each channel renders a summary its own way (relay.channels.slack.summary, channels.digest).
This module imports none of them, so importing a value does not load the stage.
"""
