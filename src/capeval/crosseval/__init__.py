"""CrossEval (Zhong et al. 2024) in one package: the capability taxonomy (`taxonomy`), the rated
references (`references`), attached files (`attachments`), the judged task (`task`, registered as
`crosseval` through capeval.tasks.crosseval) and the references as judge-check data (`human_ratings`).

This module imports nothing at load time, so the analyses can read the taxonomy without loading the task."""
