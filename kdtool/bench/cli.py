import click


@click.command()
def bench_command():
    """(placeholder, replaced by the bench work)"""


@click.command()
def predict_command():
    """(placeholder, replaced by the bench work)"""
