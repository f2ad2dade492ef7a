"""``python -m vault_proxy.cli``."""

from vault_proxy.cli.main import main

if __name__ == "__main__":
    main()
