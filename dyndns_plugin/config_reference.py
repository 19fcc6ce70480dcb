"""
C{python -m dyndns_plugin.config_reference > docs/configuration.md}: the
configuration reference, rendered from L{dyndns_plugin.config_schema} (a
module of its own so that C{-m} does not run a module the package has
already imported).
"""

import sys

from dyndns_plugin.config_schema import reference_markdown

if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
