import click


@click.command()
def export_command():
    """(placeholder, replaced by the export work)"""
