from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0006_parallel_jobs")]

    operations: list[migrations.operations.base.Operation] = []
