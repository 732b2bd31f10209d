from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labs", "0008_class_hours")]

    operations: list[migrations.operations.base.Operation] = [
        # The help text without "<prefix><domain>", which the admin showed as HTML (issue 15).
        migrations.AlterField(
            model_name="host",
            name="lv_prefix",
            field=models.CharField(
                default="vm-",
                help_text=(
                    "Guest volumes are named with this prefix, then the VM's name: for example"
                    " vm-net101-alice.raiz and vm-net101-alice.swap."
                ),
                max_length=16,
                verbose_name="LV name prefix",
            ),
        ),
    ]
