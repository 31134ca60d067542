"""The `relay` command, one module per command group; relay.cli.main builds the parser and turns errors into exit
codes, once for every command."""
