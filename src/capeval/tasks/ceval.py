"""C-Eval (Huang et al. 2023): 52 Chinese exam subjects, val split (test labels are hidden), 5-shot."""

from __future__ import annotations

from capeval.prompting import PromptLayout
from capeval.tasks._common import SubjectTask, local_or
from capeval.tasks.cmmlu import chinese_mc_row
from capeval.tasks.registry import register_subject_tasks, register_task
from capeval.tasks.sources import Source
from capeval.types import GenerationParams

# config name -> the exam's Chinese name, used in the prompt
CEVAL_SUBJECTS: dict[str, str] = {
    "computer_network": "计算机网络", "operating_system": "操作系统", "computer_architecture": "计算机组成",
    "college_programming": "大学编程", "college_physics": "大学物理", "college_chemistry": "大学化学",
    "advanced_mathematics": "高等数学", "probability_and_statistics": "概率统计", "discrete_mathematics": "离散数学",
    "electrical_engineer": "注册电气工程师", "metrology_engineer": "注册计量师", "high_school_mathematics": "高中数学",
    "high_school_physics": "高中物理", "high_school_chemistry": "高中化学", "high_school_biology": "高中生物",
    "middle_school_mathematics": "初中数学", "middle_school_biology": "初中生物", "middle_school_physics": "初中物理",
    "middle_school_chemistry": "初中化学", "veterinary_medicine": "兽医学", "college_economics": "大学经济学",
    "business_administration": "工商管理", "marxism": "马克思主义基本原理", "mao_zedong_thought": "毛泽东思想和中国特色社会主义理论体系概论",
    "education_science": "教育学", "teacher_qualification": "教师资格", "high_school_politics": "高中政治",
    "high_school_geography": "高中地理", "middle_school_politics": "初中政治", "middle_school_geography": "初中地理",
    "modern_chinese_history": "近代史纲要", "ideological_and_moral_cultivation": "思想道德修养与法律基础", "logic": "逻辑学",
    "law": "法学", "chinese_language_and_literature": "中国语言文学", "art_studies": "艺术学",
    "professional_tour_guide": "导游资格", "legal_professional": "法律职业资格", "high_school_chinese": "高中语文",
    "high_school_history": "高中历史", "middle_school_history": "初中历史", "civil_servant": "公务员",
    "sports_science": "体育学", "plant_protection": "植物保护", "basic_medicine": "基础医学", "clinical_medicine": "临床医学",
    "urban_and_rural_planner": "注册城乡规划师", "accountant": "注册会计师", "fire_engineer": "注册消防工程师",
    "environmental_impact_assessment_engineer": "环境影响评价工程师", "tax_accountant": "税务师", "physician": "医师资格",
}  # fmt: skip

# The C-Eval paper's own instruction, kept word for word so scores compare with published ones:
# "below are single-choice questions from China's {subject} exam; choose the correct answer",
# then "答案：" (answer:). The variants are capeval's paraphrases.
CEVAL_LAYOUT = PromptLayout(
    description="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。", answer_prefix="答案："
)
CEVAL_VARIANTS = (
    PromptLayout(description="下面是{subject}考试的选择题，请给出正确选项的字母。", answer_prefix="答案："),
    PromptLayout(
        description="请作答以下{subject}单项选择题，每题只有一个正确选项。", answer_prefix="正确答案是"
    ),
    PromptLayout(description="{subject}考试题：", answer_prefix="选项："),
)


def _ceval(name: str, subjects: tuple[str, ...], data: str | None) -> SubjectTask:
    return SubjectTask(
        name=name,
        source=local_or(Source("hub", "ceval/ceval-exam", subjects[0] if len(subjects) == 1 else None), data),
        split="val",
        fewshot_split="dev",
        shots=5,
        output_type="multiple_choice",
        layout=CEVAL_LAYOUT,
        variants=CEVAL_VARIANTS,
        generation=GenerationParams(max_tokens=8, stop=("\n",)),
        metrics=("acc", "acc_norm"),
        capabilities=("Knowledge", "Chinese"),
        description=f"C-Eval {subjects[0]}"
        if len(subjects) == 1
        else "C-Eval, 52 subjects (val split): micro, macro and per subject acc",
        row_to_sample_fn=chinese_mc_row("question", "answer"),
        subjects=subjects,
        subject_names=CEVAL_SUBJECTS,
        sampler="first_n",
        settings={
            "exemplars": "first 5 dev items of the subject",
            "prompt": "Chinese",
        },
    )


@register_task("ceval")
def ceval(data: str | None = None) -> SubjectTask:
    return _ceval("ceval", tuple(CEVAL_SUBJECTS), data)


register_subject_tasks("ceval", CEVAL_SUBJECTS, _ceval)
