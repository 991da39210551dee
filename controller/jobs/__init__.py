"""The Jobs the operator makes: a member's backup or restore Job from its Task and Functions
(``member_job``, ``builtin_tasks``, ``substitution``, ``claims``), a batch's hook Job
(``hook_job``), a Repository's wipe Job (``wipe_job``), and how a Job went (``outcome``)."""
