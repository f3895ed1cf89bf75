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
    // Integration center terms, as Yida's Chinese pages write them.
    CONNECTORS = "Connectors", "连接器";
    APPROVAL_SYNC = "Approval message integration", "审批消息集成";
    SYNC_STRATEGY = "Sync strategy", "同步策略";
    // Integration center (集成中心).
    IN_INTRO = "Connectors hold where and how Flowhook pushes; the sync strategy says which action receives each of the five task events.",
        "连接器定义推送的目标与认证方式；同步策略决定五种任务事件分别由哪个执行动作接收。";
    IN_CONNECTOR = "Connector", "连接器";
    IN_NEW_CONNECTOR = "New connector", "新建连接器";
    IN_EDIT_CONNECTOR = "Edit the connector", "编辑连接器";
    IN_BASE_URL = "Base URL", "基础地址";
    IN_BASE_URL_HINT = "http:// or https://; each action's path is appended. A change applies from the next delivery.",
        "http:// 或 https://；执行动作的路径拼接在其后。修改从下一次推送起生效。";
    IN_AUTH = "Authentication", "认证方式";
    IN_AUTH_HINT = "Fill in the fields of the chosen type; the others are ignored.", "填写所选类型的字段即可，其余字段将被忽略。";
    IN_AUTH_NONE = "None", "无";
    IN_AUTH_BASIC = "Basic", "Basic 认证";
    IN_AUTH_API_KEY = "API key", "API 密钥";
    IN_AUTH_BEARER = "Bearer token", "Bearer 令牌";
    IN_USERNAME = "User name", "用户名";
    IN_PASSWORD = "Password", "密码";
    IN_KEY_IN = "Sent in", "放在";
    IN_KEY_HEADER = "a header", "请求头";
    IN_KEY_QUERY = "the query string", "查询参数";
    IN_KEY_NAME = "Key name", "密钥名称";
    IN_KEY_VALUE = "Key value", "密钥值";
    IN_TOKEN = "Token", "令牌";
    IN_SECRET_KEEP = "*** (stored; leave empty to keep)", "***（已保存；留空则保持不变）";
    IN_SECRET_HINT = "Credentials are write-only: a secret field left empty keeps the stored secret (a new authentication type needs its secret).",
        "凭据只写不读：密钥字段留空则保留已保存的值（更换认证类型时须填写新的密钥）。";
    IN_HEADERS = "Default headers", "默认请求头";
    IN_HEADERS_HINT = "One per line: Name: value. Values are write-only: a value left as *** keeps the stored one.",
        "每行一个：名称: 值。值只写不读：保持 *** 则沿用已保存的值。";
    IN_TIMEOUT = "Timeout (ms)", "超时（毫秒）";
    IN_CONCURRENCY = "Requests in flight at most", "最大并发请求数";
    IN_SAVE = "Save", "保存";
    IN_ACTIONS = "Actions", "执行动作";
    IN_ACTION = "Action", "执行动作";
    IN_NEW_ACTION = "Add an action", "添加执行动作";
    IN_ADD_ACTION = "Add", "添加";
    IN_PATH = "Path", "路径";
    IN_ENCODING = "Body encoding", "请求体编码";
    IN_USED_BY = "Receives", "接收事件";
    IN_ACTIVE = "Active", "正常";
    IN_PAUSED = "Paused", "已暂停";
    IN_PAUSE = "Pause", "暂停";
    IN_RESUME = "Resume", "恢复";
    IN_PAUSE_DELETE = "Pause or delete", "暂停或删除";
    IN_DELETE_CONNECTOR = "Delete the connector", "删除连接器";
    IN_DELETE_HINT = "Refused while the sync strategy sends an event to one of its actions. Its pending deliveries are cancelled; the log keeps them.",
        "若同步策略仍将事件发往其执行动作，则不允许删除。其待发送的推送将被取消，日志中保留记录。";
    IN_ITS_DELIVERIES = "Its deliveries", "其推送记录";
    IN_TEST_FIRE = "Test fire", "测试推送";
    IN_TEST_HINT = "A sample of each of the five events was just sent to this action, signed with the application's systemToken; nothing was stored.",
        "刚刚向该执行动作发送了五种事件的样例（以应用的 systemToken 签名）；未保存任何记录。";
    IN_REQUEST = "Request", "请求";
    IN_RESPONSE = "Response", "响应";
    IN_HEADERS_TITLE = "Headers", "请求头 / 响应头";
    IN_PARAMS = "Parameters", "参数";
    IN_BODY = "Body", "内容";
    IN_ERROR = "Error", "错误";
    // Sync strategy.
    IN_STRATEGY_HINT = "Applies to events created after it is saved; history is pushed only by a backfill.",
        "保存后仅对新产生的事件生效；历史数据只能通过补推发送。";
    IN_NO_STRATEGY = "No sync strategy is saved yet: nothing is pushed.", "尚未保存同步策略：不会推送任何事件。";
    IN_EVENTS_TO_ACTIONS = "Events and the actions that receive them", "事件与接收它们的执行动作";
    IN_NOT_PUSHED = "Not pushed", "不推送";
    IN_OPTIONS = "Options", "选项";
    IN_ENABLED = "Enabled", "启用";
    IN_ORDERED = "Keep each instance's events in order", "按流程实例保持事件顺序";
    IN_STANDARD_WEBHOOKS = "Also sign with Standard Webhooks", "同时使用 Standard Webhooks 签名";
    IN_SW_HINT = "When first turned on, its secret (whsec_…) is shown once.", "首次开启时，其密钥（whsec_…）只显示一次。";
    IN_APP_FILTER = "Only these applications", "仅限以下应用";
    IN_PROCESS_FILTER = "Only these processes", "仅限以下流程";
    IN_FILTER_HINT = "None ticked: all.", "不勾选即为全部。";
    IN_SAVE_STRATEGY = "Save the strategy", "保存同步策略";
    IN_SECRET_ONCE = "The Standard Webhooks secret, shown this once: copy it to the receiver now.",
        "Standard Webhooks 密钥，仅显示这一次：请立即复制到接收方。";
    IN_ROTATE_SECRET = "Rotate the Standard Webhooks secret", "轮换 Standard Webhooks 密钥";
    IN_GRACE = "Previous secret keeps signing for (seconds)", "旧密钥继续签名的时长（秒）";
    // Events.
    EV_CREATED = "Task created", "任务创建";
    EV_FINISHED = "Task finished", "任务完成";
    EV_CANCELLED = "Task cancelled", "任务取消";
    EV_DELETED = "Task deleted", "任务删除";
    EV_CC = "Cc", "抄送";
    // Delivery log.
    IN_DELIVERY_LOG = "Delivery log", "推送日志";
    IN_DELIVERY = "Delivery", "推送";
    IN_EVENT = "Event", "事件";
    IN_TASK_ID = "Task ID", "任务 ID";
    IN_ATTEMPTS = "Attempts", "尝试";
    IN_ATTEMPT = "Attempt", "第几次尝试";
    IN_LAST_ERROR = "Last error", "最近错误";
    IN_NEXT_ATTEMPT = "Next attempt", "下次尝试";
    IN_REDELIVER = "Redeliver", "重新推送";
    IN_REDELIVERED = "Redelivered: it is due now.", "已重新推送：将立即发送。";
    IN_REDELIVER_BULK = "Redeliver in bulk", "批量重新推送";
    IN_REDELIVER_BULK_HINT = "Every delivered or dead delivery the filters above select is sent again (pending ones are on their way; cancelled ones have nowhere to go).",
        "按上方筛选条件，重新推送所有已送达或已放弃的记录（待发送的正在途中；已取消的没有目标）。";
    IN_REDELIVER_MATCHING = "Redeliver all that match", "重新推送全部匹配项";
    ST_PENDING = "Pending", "待发送";
    ST_DELIVERED = "Delivered", "已送达";
    ST_DEAD = "Dead", "已放弃";
    ST_DONE = "Done", "已完成";
    ST_RUNNING_JOB = "Running", "进行中";
    // Backfill and jobs.
    IN_BACKFILL = "Backfill", "历史补推";
    IN_BACKFILL_HINT = "Push the current state of existing tasks through the same pipeline, marked X-Flowhook-Backfill: true. Receivers de-duplicate by event id.",
        "通过同一管道推送已有任务的当前状态，并标记 X-Flowhook-Backfill: true。接收方可按事件 ID 去重。";
    IN_BACKFILL_WHAT = "What to push", "推送范围";
    IN_BACKFILL_OPEN = "Every task open now (its task.created)", "当前所有待处理任务（其 task.created）";
    IN_BACKFILL_RANGE = "Every event created between the dates below (UTC, both included)", "以下日期之间产生的所有事件（UTC，含首尾）";
    IN_START_BACKFILL = "Start the backfill", "开始补推";
    IN_PROGRESS = "Progress", "进度";
    IN_TOTAL = "Deliveries", "推送总数";
    IN_PARAMETERS = "Parameters", "参数";
    IN_REFRESHING = "This page reloads itself every second until nothing is pending.", "本页每秒自动刷新，直到没有待发送的推送。";
    // Endpoint health.
    IN_HEALTH = "Endpoint health", "端点健康";
    IN_HEALTH_HINT = "Each node keeps its own circuit breakers in memory: this is the breaker of the node that answered.",
        "每个节点在内存中维护自己的熔断器：此处显示的是响应本页面的节点上的状态。";
    IN_ENDPOINT = "Endpoint", "端点";
    IN_BREAKER = "Breaker", "熔断器";
    IN_BREAKER_CLOSED = "Closed (sending)", "关闭（正常发送）";
    IN_BREAKER_OPEN = "Open (holding back)", "打开（暂停发送）";
    IN_BREAKER_HALF = "Half-open (probing)", "半开（试探中）";
    IN_FAILURES = "Failures in a row", "连续失败次数";
    IN_LAST_SUCCESS = "Last success", "最近成功";
    IN_LAST_FAILURE = "Last failure", "最近失败";
    IN_OLDEST = "oldest", "最早";
    IN_QUEUE_PENDING = "Queue depth (pending deliveries)", "队列深度（待发送）";
    IN_QUEUE_DEAD = "Dead deliveries", "已放弃的推送";
    IN_RATE = "Delivery rate, last hour", "推送速率（最近一小时）";
    IN_DELIVERED_PER_MIN = "delivered", "成功";
    IN_FAILED_PER_MIN = "failed", "失败";
    IN_RATE_HINT = "Attempts per minute (UTC); failed attempts are hatched.", "每分钟的尝试次数（UTC）；失败以斜线标出。";
    // Directory and access.
    DIR_USERS = "Users", "用户";
    DIR_ROLES = "Roles", "角色";
    DIR_APPS = "Applications", "应用";
    DIR_KEYS = "API keys", "API 密钥";
    DIR_MANAGER = "Manager", "主管";
    DIR_MANAGER_CHAIN = "Manager chain", "主管链";
    DIR_ADMIN = "Administrator", "管理员";
    DIR_YES = "Yes", "是";
    DIR_NO = "No", "否";
    DIR_PUT_USER = "Add or replace a user", "添加或替换用户";
    DIR_PUT_ROLE = "Add or replace a role", "添加或替换角色";
    DIR_MEMBERS = "Members", "成员";
    DIR_MEMBERS_HINT = "Members (user ids, comma-separated, in order)", "成员（用户 ID，以逗号分隔，按顺序）";
    DIR_NEW_APP = "New application", "新建应用";
    DIR_CREATE = "Create", "创建";
    DIR_ROTATE = "Rotate the token", "轮换令牌";
    DIR_COMMIT = "Commit the rotation", "确认轮换";
    DIR_GRACE = "Old token valid for (s)", "旧令牌有效期（秒）";
    DIR_ROTATION_PENDING = "Rotation pending: still signing with the previous token until committed.",
        "轮换待确认：确认前仍使用旧令牌签名。";
    DIR_PREVIOUS_UNTIL = "Previous token honoured until", "旧令牌有效至";
    DIR_TOKEN_ONCE = "The new systemToken, shown this once: install it at the receiver now.",
        "新的 systemToken，仅显示这一次：请立即配置到接收方。";
    DIR_NEW_KEY = "New API key", "新建 API 密钥";
    DIR_SCOPES = "Scopes", "权限范围";
    DIR_REVOKE = "Revoke", "吊销";
    DIR_KEY_ONCE = "The new API key, shown this once (only its hash is stored): copy it now.",
        "新的 API 密钥，仅显示这一次（只保存其哈希）：请立即复制。";
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
