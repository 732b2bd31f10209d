from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0009_explains_itself")]

    operations: list[migrations.operations.base.Operation] = []
