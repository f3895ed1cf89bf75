//! Chinese and English: every label of the console is a [`Msg`] constant holding both, so a
//! label without its translation does not compile. The language comes from the `fh_lang`
//! cookie (set by the switch in the header), else from `Accept-Language`, else English.
//!
//! The seed's own terms are used as Yida's Chinese pages write them: 集成中心, 连接器,
//! 审批消息集成, 同步策略, 我创建的 / 待我处理 / 我已处理 / 抄送我的.

/// The cookie remembering the language switch.
pub const LANG_COOKIE: &str = "fh_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The other language (the switch offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// From the cookie, else the first of `Accept-Language`'s languages we speak (by quality).
    pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0f32);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    pub fn t(self, m: &Msg) -> &'static str {
        match self {
            Lang::En => m.en,
            Lang::Zh => m.zh,
        }
    }
}

/// One label in both languages.
#[derive(Debug, Clone, Copy)]
pub struct Msg {
    pub en: &'static str,
    pub zh: &'static str,
}

macro_rules! messages {
    ($($name:ident = $en:literal, $zh:literal;)*) => {
        $(pub const $name: Msg = Msg { en: $en, zh: $zh };)*
    };
}

messages! {
    PRODUCT = "Flowhook console", "Flowhook 控制台";
    SKIP_TO_CONTENT = "Skip to content", "跳到正文";
    MAIN_NAV = "Main navigation", "主导航";
    // Navigation.
    NAV_TASKS = "Task center", "任务中心";
    NAV_START = "Start a process", "发起流程";
    NAV_PROCESSES = "Processes", "流程管理";
    NAV_INTEGRATION = "Integration center", "集成中心";
    NAV_DIRECTORY = "Directory & keys", "通讯录与密钥";
    NAV_ORGS = "Organisations", "组织";
    SIGN_IN = "Sign in", "登录";
    SIGN_OUT = "Sign out", "退出登录";
    SIGNED_IN_AS = "Signed in as", "当前身份";
    OPERATOR = "operator", "管理员";
    ORGANISATION = "Organisation", "组织";
    SWITCH_LANG = "中文", "English";
    SWITCH_LANG_LABEL = "Language", "语言";
    // Sign-in.
    SIGN_IN_TITLE = "Sign in to the console", "登录控制台";
    API_KEY = "Admin API key", "管理员 API 密钥";
    API_KEY_HINT = "An organisation API key with the admin scope, or the bootstrap admin key.",
        "具有 admin 权限的组织 API 密钥，或引导管理员密钥。";
    SIGN_IN_BAD_KEY = "That key is unknown or lacks the admin scope.", "密钥无效或没有 admin 权限。";
    APPROVERS_HINT = "Approvers: open the link in your task notification; no sign-in needed.",
        "审批人：打开待办通知中的链接即可，无需登录。";
    PICK_ORG_TITLE = "Choose an organisation", "选择组织";
    PICK = "Open", "进入";
    NO_ORGS = "No organisation yet: create one with the API (POST /api/v1/orgs).",
        "还没有组织：请用 API（POST /api/v1/orgs）创建。";
    // Task center.
    LIST_CREATED = "Created by me", "我创建的";
    LIST_TODO = "To do", "待我处理";
    LIST_DONE = "Done by me", "我已处理";
    LIST_CC = "Cc'd to me", "抄送我的";
    LISTS = "Lists", "列表";
    FILTERS = "Filters", "筛选";
    USER = "User", "用户";
    APP = "Application", "应用";
    PROCESS = "Process", "流程";
    FROM_DATE = "Created from (UTC)", "创建日期起（UTC）";
    TO_DATE = "Created before (UTC)", "创建日期止（UTC）";
    ANY = "Any", "全部";
    APPLY = "Apply", "应用筛选";
    SHOW = "Show", "查看";
    TITLE = "Title", "标题";
    NODE = "Node", "节点";
    STATUS = "Status", "状态";
    CREATED_AT = "Created", "创建时间";
    ENDED_AT = "Ended", "结束时间";
    ORIGINATOR = "Originator", "发起人";
    NOTHING_HERE = "Nothing here.", "暂无数据。";
    NEXT_PAGE = "Next page", "下一页";
    FIRST_PAGE = "First page", "第一页";
    PICK_USER_HINT = "Pick a user to see their lists.", "选择一个用户以查看其任务列表。";
    // Task page.
    FORM_DATA = "Form data", "表单数据";
    FIELD = "Field", "字段";
    VALUE = "Value", "值";
    DIAGRAM = "Process diagram", "流程图";
    TIMELINE = "Timeline", "流转记录";
    ACTIONS = "Actions", "操作";
    ACT_AS = "Act as", "代表用户操作";
    CHANGE = "Change", "切换";
    REMARK = "Remark", "意见";
    AGREE = "Agree", "同意";
    DISAGREE = "Disagree", "拒绝";
    SUBMIT = "Submit", "提交";
    FORWARD = "Forward to", "转交";
    FORWARD_BUTTON = "Forward", "转交";
    APPEND = "Add approvers", "加签";
    APPEND_USERS = "Users (comma-separated ids)", "用户（以逗号分隔的 ID）";
    APPEND_POSITION = "Position", "位置";
    BEFORE = "Before me", "在我之前";
    AFTER = "After me", "在我之后";
    APPEND_BUTTON = "Add", "加签";
    RETURN = "Return to", "退回到";
    RETURN_BUTTON = "Return", "退回";
    TO_ORIGINATOR = "The originator", "发起人";
    WITHDRAW = "Withdraw", "撤销";
    TERMINATE = "Terminate", "终止";
    DELETE = "Delete", "删除";
    INSTANCE_ACTIONS = "Instance", "流程实例";
    NO_ACTIONS = "Nothing for you to do here.", "您在此没有可执行的操作。";
    READ_ONLY = "This task has ended: the page is read-only.", "此任务已结束：页面为只读。";
    OPEN_FROM_LINK = "To act on this task, open it from its own approval link.",
        "如需处理此任务，请从该任务自己的审批链接打开。";
    YOUR_TASK = "Your task", "您的任务";
    DONE_OK = "Done.", "操作成功。";
    ASSIGNEE = "Assignee", "处理人";
    VERSION = "Version", "版本";
    INSTANCE_STATUS = "Instance status", "实例状态";
    TL_ASSIGNED = "assigned to", "分配给";
    TL_STARTED = "started the process", "发起了流程";
    TL_CC = "cc'd to", "抄送给";
    TL_CANCELLED = "cancelled", "已取消";
    TL_BY = "by", "由";
    TL_DELETED = "deleted with the instance", "随实例删除";
    // Statuses.
    ST_RUNNING = "Running", "审批中";
    ST_APPROVED = "Approved", "已通过";
    ST_REJECTED = "Rejected", "已拒绝";
    ST_WITHDRAWN = "Withdrawn", "已撤销";
    ST_TERMINATED = "Terminated", "已终止";
    ST_DELETED = "Deleted", "已删除";
    ST_OPEN = "Open", "待处理";
    ST_FINISHED = "Finished", "已处理";
    ST_CANCELLED = "Cancelled", "已取消";
    ACT_AGREE = "agreed", "同意";
    ACT_DISAGREE = "disagreed", "拒绝";
    ACT_FORWARD = "forwarded", "转交";
    ACT_APPEND = "added approvers", "加签";
    ACT_RETURN = "returned", "退回";
    // Diagram.
    DG_START = "Start", "开始";
    DG_END = "End", "结束";
    DG_CURRENT = "Current", "当前";
    DG_DONE = "Done", "已完成";
    DG_PENDING = "Not reached", "未到达";
    DG_LEGEND = "Legend", "图例";
    DG_DEFAULT = "default", "默认";
    DG_APPROVAL = "Approval", "审批人";
    DG_OPERATOR = "Handler", "执行人";
    DG_CARBON = "Cc", "抄送人";
    DG_ROUTE = "Route", "条件分支";
    DG_PARALLEL = "Parallel", "并行分支";
    DG_OR = "or-sign", "或签";
    DG_ALL = "countersign", "会签";
    DG_ONE_BY_ONE = "one by one", "依次审批";
    // Start.
    START_TITLE = "Start a process", "发起流程";
    START_AS = "Start as", "发起人";
    START_BUTTON = "Start", "发起";
    FORM_DATA_HINT = "One field per line: name=value", "每行一个字段：名称=值";
    NO_PROCESSES = "No process yet.", "还没有流程。";
    // Processes.
    PROCESSES_TITLE = "Processes", "流程管理";
    CODE = "Code", "编码";
    NAME = "Name", "名称";
    LATEST = "Latest version", "最新版本";
    VERSIONS = "Versions", "版本";
    DOCUMENT = "Document (YAML or JSON)", "流程定义（YAML 或 JSON）";
    VALIDATE = "Validate", "校验";
    SAVE_VERSION = "Save as a new version", "保存为新版本";
    VALID = "The document is valid.", "流程定义有效。";
    PROBLEMS = "Problems", "问题";
    PATH = "Path", "路径";
    MESSAGE = "Message", "说明";
    NEW_PROCESS = "New process", "新建流程";
    SAVED = "Saved as version", "已保存为版本";
    VIEWING_VERSION = "Viewing version", "正在查看版本";
    // Placeholders for the integration center and directory pages.
    COMING = "These pages are being built; until then use the REST API (see /api/v1/openapi.json).",
        "这些页面正在建设中；在此之前请使用 REST API（见 /api/v1/openapi.json）。";
    CONNECTORS = "Connectors", "连接器";
    APPROVAL_SYNC = "Approval message integration", "审批消息集成";
    SYNC_STRATEGY = "Sync strategy", "同步策略";
    // Errors.
    ERR_FORBIDDEN = "Forbidden", "禁止访问";
    ERR_NOT_FOUND = "Not found", "未找到";
    ERR_BAD_REQUEST = "Bad request", "请求有误";
    ERR_CONFLICT = "Not possible now", "当前无法执行";
    ERR_INTERNAL = "Something went wrong", "出错了";
    ERR_CSRF = "The form was not sent from this console page (its security token is missing or wrong). Reload the page and try again.",
        "表单不是从本控制台页面提交的（安全令牌缺失或错误）。请刷新页面后重试。";
    ERR_LINK = "This approval link is not valid: it was changed, it has expired, or it belongs to another task. Ask for a new notification or open the task from your task center.",
        "此审批链接无效：链接被修改、已过期或属于其他任务。请重新获取通知，或从任务中心打开该任务。";
    ERR_NOT_FOUND_TEXT = "There is no such page here, or it is not yours to see.",
        "此处没有该页面，或您无权查看。";
    ERR_INTERNAL_TEXT = "The server could not answer; the details are in its log.",
        "服务器无法响应；详情见服务器日志。";
    ERR_NO_ORG = "Choose an organisation first.", "请先选择组织。";
    ERR_OPERATORS_ONLY = "Only operators (admin key) may open this page.", "只有管理员（admin 密钥）可以打开此页面。";
    BACK_HOME = "Back to the console", "返回控制台";
}
