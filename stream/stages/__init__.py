"""The three stages (anonymize, aggregate, release): each one's logic, runtime and Faust
registration, and the manual-commit loop the aggregate and release stages consume with."""
