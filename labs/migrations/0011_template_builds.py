from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0010_roster_preview")]

    operations: list[migrations.operations.base.Operation] = []
