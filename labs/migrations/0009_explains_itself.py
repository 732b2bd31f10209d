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
        # Every model's name in the admin is translatable (the admin's strings, issue 15).
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["-created_at"],
                "verbose_name": "audit event",
                "verbose_name_plural": "audit events",
            },
        ),
        migrations.AlterModelOptions(
            name="guest",
            options={"ordering": ["lab", "domain_name"], "verbose_name": "guest", "verbose_name_plural": "guests"},
        ),
        migrations.AlterModelOptions(
            name="host", options={"ordering": ["name"], "verbose_name": "host", "verbose_name_plural": "hosts"}
        ),
        migrations.AlterModelOptions(
            name="hostusagesample",
            options={"verbose_name": "host usage sample", "verbose_name_plural": "host usage samples"},
        ),
        migrations.AlterModelOptions(
            name="ippool", options={"ordering": ["name"], "verbose_name": "IP pool", "verbose_name_plural": "IP pools"}
        ),
        migrations.AlterModelOptions(
            name="lab", options={"ordering": ["-created_at"], "verbose_name": "lab", "verbose_name_plural": "labs"}
        ),
        migrations.AlterModelOptions(
            name="labtemplate",
            options={"ordering": ["name"], "verbose_name": "lab template", "verbose_name_plural": "lab templates"},
        ),
        migrations.AlterModelOptions(
            name="studentquota", options={"verbose_name": "student quota", "verbose_name_plural": "student quotas"}
        ),
        migrations.AlterModelOptions(
            name="task", options={"ordering": ["-created_at"], "verbose_name": "task", "verbose_name_plural": "tasks"}
        ),
        migrations.AlterModelOptions(
            name="usagecursor", options={"verbose_name": "usage cursor", "verbose_name_plural": "usage cursors"}
        ),
        migrations.AlterModelOptions(
            name="usagesample",
            options={"verbose_name": "guest usage sample", "verbose_name_plural": "guest usage samples"},
        ),
        migrations.AlterModelOptions(
            name="usagetotal", options={"verbose_name": "usage total", "verbose_name_plural": "usage totals"}
        ),
    ]
