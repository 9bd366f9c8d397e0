"""The ``dvip`` command line (installed as the ``dvip_cli`` package)."""
