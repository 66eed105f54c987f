// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {InsuranceFund} from "../../src/InsuranceFund.sol";
import {Vault} from "../../src/Vault.sol";
import {HxTimelock} from "../../src/governance/HxTimelock.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {TreeBuilder} from "./TreeBuilder.sol";

/// @notice Deploys the system exactly as settlement/deploy.py does (timelock, then vault and fund pointing at the
///         precomputed ClearingHouse and EscapeHatch, then those two) and keeps a small model of the engine:
///         claims and liabilities per (token, account), the insurance fund, the batch's pending effects, and the
///         payouts each accepted batch queued (read from its `PayoutQueued` events).
abstract contract HxBase is Test {
    using TreeBuilder for TreeBuilder.Tree;

    uint256 internal constant FREEZE_PERIOD = 3 days;
    uint256 internal constant DISPUTE_WINDOW = 6 hours;
    uint256 internal constant FORCED_PERIOD = 3 days;
    uint256 internal constant CREDIT_PERIOD = 1 days;
    uint256 internal constant OUTFLOW_PERIOD = 1 days;
    uint256 internal constant MAX_PAUSE = 1 days;
    uint256 internal constant TIMELOCK_DELAY = 7 days;
    uint256 internal constant DELAY_FLOOR = 4 days;
    uint256 internal constant BIG_CAP = 1e40;

    struct Dep {
        uint48 id;
        address account;
        address token;
        uint256 amount;
        uint64 depositedAt;
    }

    struct Queued {
        uint64 batchId;
        ClearingHouse.Payout[] payouts;
    }

    HxTimelock internal timelock;
    Vault internal vault;
    InsuranceFund internal fund;
    ClearingHouse internal ch;
    EscapeHatch internal hatch;
    TestToken internal usdc;
    TestToken internal weth;
    TestToken internal wbtc;

    address internal governor = makeAddr("governor");
    address internal operator = makeAddr("operator");
    address internal guardian = makeAddr("guardian");
    address internal watcher = makeAddr("watcher");
    address internal alice;
    address internal bob;
    address internal carol;
    address internal dave;
    mapping(address => uint256) internal keyOf;

    address[] internal actors;
    address[] internal tokens;

    // engine model
    mapping(address token => mapping(address account => uint256)) internal bal; // claims
    mapping(address token => mapping(address account => uint256)) internal debt; // liabilities
    mapping(address token => uint256) internal priceOf; // micro-USDC per whole unit
    mapping(address token => uint256) internal fundModel;
    mapping(address account => uint256) internal nextNonce;
    ClearingHouse.SignedWithdrawal[] internal pendingW;
    ClearingHouse.InsuranceMove[] internal pendingI;
    ClearingHouse.ForcedServe[] internal pendingF;
    Dep[] internal deps;
    uint48 internal creditedUpTo;
    Queued[] internal queued; // accepted batches with payouts not yet executed by the helpers
    mapping(uint64 batchId => bytes32) internal hashAt;
    mapping(uint64 batchId => ClearingHouse.Ledger[]) internal ledgersAt;
    uint256 private _salt;

    function setUp() public virtual {
        uint256 k;
        (alice, k) = makeAddrAndKey("alice");
        keyOf[alice] = k;
        (bob, k) = makeAddrAndKey("bob");
        keyOf[bob] = k;
        (carol, k) = makeAddrAndKey("carol");
        keyOf[carol] = k;
        (dave, k) = makeAddrAndKey("dave");
        keyOf[dave] = k;
        usdc = new TestToken("USD Coin (test)", "USDC", 6);
        weth = new TestToken("Wrapped Ether (test)", "WETH", 18);
        wbtc = new TestToken("Wrapped Bitcoin (test)", "WBTC", 8);
        tokens.push(address(usdc));
        tokens.push(address(weth));
        tokens.push(address(wbtc));
        priceOf[address(usdc)] = 1e6;
        priceOf[address(weth)] = 3000e6;
        priceOf[address(wbtc)] = 60_000e6;
        actors.push(alice);
        actors.push(bob);
        actors.push(carol);
        actors.push(dave);
        _deploy(tokens);
    }

    function _config() internal pure returns (ClearingHouse.Config memory) {
        return ClearingHouse.Config({
            freezePeriod: FREEZE_PERIOD,
            disputeWindow: DISPUTE_WINDOW,
            forcedWithdrawalPeriod: FORCED_PERIOD,
            depositCreditPeriod: CREDIT_PERIOD,
            outflowPeriod: OUTFLOW_PERIOD,
            maxPause: MAX_PAUSE
        });
    }

    function _watchers() internal view returns (address[] memory w) {
        w = new address[](1);
        w[0] = watcher;
    }

    function _caps(uint256 n) internal pure returns (uint256[] memory caps) {
        caps = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            caps[i] = BIG_CAP;
        }
    }

    function _noFeeds() internal pure returns (ClearingHouse.InitialPriceFeed[] memory) {
        return new ClearingHouse.InitialPriceFeed[](0);
    }

    function _deploy(address[] memory listed) internal {
        timelock = new HxTimelock(TIMELOCK_DELAY, DELAY_FLOOR, governor);
        uint64 n = vm.getNonce(address(this));
        address chAt = vm.computeCreateAddress(address(this), n + 2);
        address hatchAt = vm.computeCreateAddress(address(this), n + 3);
        vault = new Vault(chAt, hatchAt, address(timelock), guardian, MAX_PAUSE, listed);
        fund = new InsuranceFund(chAt, address(vault), address(timelock));
        ch = new ClearingHouse(
            vault,
            fund,
            timelock,
            operator,
            guardian,
            _watchers(),
            _config(),
            _caps(listed.length),
            _noFeeds()
        );
        hatch = new EscapeHatch(ch);
        assertEq(address(ch), chAt, "predicted ClearingHouse address");
        assertEq(address(hatch), hatchAt, "predicted EscapeHatch address");
        for (uint256 i; i < listed.length; ++i) {
            if (priceOf[listed[i]] == 0) priceOf[listed[i]] = 1e6;
        }
    }

    // ------------------------------------------------------------------ users

    function _depositUncredited(address who, address token, uint256 amount) internal returns (uint48 id) {
        TestToken(token).mint(who, amount);
        vm.startPrank(who);
        TestToken(token).approve(address(vault), amount);
        id = vault.deposit(token, amount, who);
        vm.stopPrank();
        deps.push(Dep(id, who, token, amount, uint64(block.timestamp)));
    }

    /// Deposit and credit it in the model (the next batch credits every deposit up to this one).
    function _deposit(address who, address token, uint256 amount) internal returns (uint48 id) {
        id = _depositUncredited(who, token, amount);
        _credit(id);
    }

    /// The engine credits every deposit up to `id` (those reclaimed are skipped, as the chain does).
    function _credit(uint48 id) internal {
        for (uint256 i = creditedUpTo; i < id; ++i) {
            Dep memory d = deps[i];
            if (!vault.reclaimed(d.id)) bal[d.token][d.account] += d.amount;
        }
        creditedUpTo = id;
    }

    function _depositRecords(uint48 from, uint48 to)
        internal
        view
        returns (ClearingHouse.DepositRecord[] memory r)
    {
        r = new ClearingHouse.DepositRecord[](to - from);
        for (uint256 i = from; i < to; ++i) {
            Dep memory d = deps[i];
            r[i - from] = ClearingHouse.DepositRecord(d.account, d.token, d.amount, d.depositedAt);
        }
    }

    // ------------------------------------------------------------------ signed withdrawals

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signed(address who, address token, uint256 amount, address to)
        internal
        returns (ClearingHouse.SignedWithdrawal memory w)
    {
        w = ClearingHouse.SignedWithdrawal(
            who, token, amount, to, nextNonce[who]++, block.timestamp + 1 days, ""
        );
        w.signature = _sign(keyOf[who], ch.withdrawalDigest(who, token, amount, to, w.nonce, w.expiry));
    }

    /// The engine accepts `who`'s signed withdrawal to its own address.
    function _withdraw(address who, address token, uint256 amount) internal {
        bal[token][who] -= amount;
        pendingW.push(_signed(who, token, amount, who));
    }

    function _feeToFund(address who, address token, uint256 amount) internal {
        bal[token][who] -= amount;
        fundModel[token] += amount;
        pendingI.push(ClearingHouse.InsuranceMove(token, int256(amount)));
    }

    function _coverFromFund(address who, address token, uint256 amount) internal {
        bal[token][who] += amount;
        fundModel[token] -= amount;
        pendingI.push(ClearingHouse.InsuranceMove(token, -int256(amount)));
    }

    // ------------------------------------------------------------------ trees and batches

    function _amounts(address token, bool liabilities) internal view returns (uint256[] memory a) {
        a = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            a[i] = liabilities ? debt[token][actors[i]] : bal[token][actors[i]];
        }
    }

    function _tree(address token) internal view returns (TreeBuilder.Tree memory) {
        return TreeBuilder.build(token, actors, _amounts(token, false));
    }

    function _liabTree(address token) internal view returns (TreeBuilder.Tree memory) {
        return TreeBuilder.buildLiabilities(token, actors, _amounts(token, true));
    }

    function _assets() internal view returns (ClearingHouse.AssetState[] memory a) {
        address[] memory listed = vault.listedTokens();
        a = new ClearingHouse.AssetState[](listed.length);
        for (uint256 i; i < listed.length; ++i) {
            TreeBuilder.Tree memory c = _tree(listed[i]);
            TreeBuilder.Tree memory l = _liabTree(listed[i]);
            a[i] = ClearingHouse.AssetState(
                listed[i], c.root(), c.total(), l.root(), l.total(), priceOf[listed[i]]
            );
        }
    }

    /// Published-data header (magic, batch id, asset count) and an opaque body: the forge tests check the header
    /// rule; the full format is built and checked by settlement/published_data.py.
    function _data(uint64 batchId, uint256 n) internal pure returns (bytes memory) {
        return abi.encodePacked(bytes4(0x68786431), batchId, uint8(n), "body");
    }

    function _batch() internal view returns (ClearingHouse.Batch memory b) {
        b.batchId = ch.lastBatchId() + 1;
        b.prevBatchHash = ch.lastBatchHash();
        uint48 prevD = ch.lastCreditedDepositId();
        b.lastCreditedDepositId = creditedUpTo > prevD ? creditedUpTo : prevD;
        b.deposits = _depositRecords(prevD, b.lastCreditedDepositId);
        b.assets = _assets();
        b.withdrawals = pendingW;
        b.forcedServes = pendingF;
        b.insuranceMoves = pendingI;
        b.data = _data(b.batchId, b.assets.length);
    }

    function _submit(ClearingHouse.Batch memory b) internal returns (bytes32 h) {
        vm.recordLogs();
        vm.prank(operator);
        h = ch.submitBatch(b);
        _recordQueued(b.batchId);
        hashAt[b.batchId] = h;
        delete ledgersAt[b.batchId];
        address[] memory listed = vault.listedTokens();
        for (uint256 i; i < listed.length; ++i) {
            ledgersAt[b.batchId].push(ch.ledger(listed[i]));
        }
        delete pendingW;
        delete pendingI;
        delete pendingF;
    }

    /// Submit the pending batch as the operator, expecting it to revert with `err`.
    function _submitReverts(bytes memory err) internal {
        ClearingHouse.Batch memory b = _batch();
        vm.expectRevert(err);
        vm.prank(operator);
        ch.submitBatch(b);
    }

    function _submit() internal returns (bytes32) {
        return _submit(_batch());
    }

    function _recordQueued(uint64 batchId) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 topic = ClearingHouse.PayoutQueued.selector;
        uint256 k;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == topic) ++k;
        }
        if (k == 0) return;
        Queued storage q = queued.push();
        q.batchId = batchId;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == topic) {
                (, ClearingHouse.Payout memory p) = abi.decode(logs[i].data, (uint256, ClearingHouse.Payout));
                q.payouts.push(p);
            }
        }
    }

    function _payoutsOf(uint64 batchId) internal view returns (ClearingHouse.Payout[] memory) {
        for (uint256 i; i < queued.length; ++i) {
            if (queued[i].batchId == batchId) return queued[i].payouts;
        }
        return new ClearingHouse.Payout[](0);
    }

    /// Wait out the dispute window of every queued batch and pay all their payouts (anyone may call).
    function _payOut() internal {
        if (queued.length == 0) return;
        uint64 last = queued[queued.length - 1].batchId;
        (,,, uint64 acceptedAt,,,) = ch.batchRecord(last);
        if (block.timestamp < acceptedAt + DISPUTE_WINDOW) vm.warp(acceptedAt + DISPUTE_WINDOW);
        for (uint256 i; i < queued.length; ++i) {
            ch.executePayouts(queued[i].batchId, queued[i].payouts, type(uint256).max);
        }
        delete queued;
    }

    /// `by` (guardian or watcher) voids batch `batchId` and all after it.
    function _challenge(address by, uint64 batchId) internal {
        vm.prank(by);
        ch.challengeBatch(batchId, hashAt[batchId - 1], ledgersAt[batchId - 1]);
        uint256 i;
        while (i < queued.length) {
            if (queued[i].batchId >= batchId) {
                queued[i] = queued[queued.length - 1];
                queued.pop();
            } else {
                ++i;
            }
        }
    }

    /// alice deposited 1 WETH and lost 1,000 USDC to bob, who deposited 5,000 USDC: alice owes 1,000 USDC against
    /// her WETH; the vault holds 5,000 USDC and 1 WETH (value 8,000 at 3,000 USDC/WETH).
    function _crossMargin() internal {
        _deposit(alice, address(weth), 1e18);
        _deposit(bob, address(usdc), 5000e6);
        _submit();
        debt[address(usdc)][alice] = 1000e6;
        bal[address(usdc)][bob] += 1000e6;
        _submit();
    }

    function _freeze() internal {
        uint256 at = uint256(ch.lastBatchAt()) + FREEZE_PERIOD;
        if (block.timestamp < at) vm.warp(at);
        ch.freeze(ch.lastBatchId());
    }

    function _indexOfActor(address who) internal view returns (uint256) {
        for (uint256 i; i < actors.length; ++i) {
            if (actors[i] == who) return i;
        }
        revert("actor");
    }

    /// Queue a `ForcedServe` of request `rid` for the next batch (`withProof`: `who`'s claim-leaf proof of
    /// `token`, which a short serve needs).
    function _serve(uint256 rid, uint256 amount, address who, address token, bool withProof) internal {
        uint256 leaf = _indexOfActor(who);
        ClearingHouse.ForcedServe storage s = pendingF.push();
        s.requestId = rid;
        s.amount = amount;
        s.leafIndex = leaf;
        if (withProof) {
            SumTree.Node[] memory p = _tree(token).proof(leaf);
            for (uint256 i; i < p.length; ++i) {
                s.proof.push(p[i]);
            }
        }
    }

    /// `who`'s leaf proofs of every asset against the model (the model must equal the escape batch).
    function _proofs(address who)
        internal
        view
        returns (EscapeHatch.LeafProof[] memory claims, EscapeHatch.LeafProof[] memory liabs)
    {
        address[] memory listed = vault.listedTokens();
        uint256 leaf = _indexOfActor(who);
        claims = new EscapeHatch.LeafProof[](listed.length);
        liabs = new EscapeHatch.LeafProof[](listed.length);
        for (uint256 i; i < listed.length; ++i) {
            claims[i] = EscapeHatch.LeafProof(bal[listed[i]][who], leaf, _tree(listed[i]).proof(leaf));
            liabs[i] = EscapeHatch.LeafProof(debt[listed[i]][who], leaf, _liabTree(listed[i]).proof(leaf));
        }
    }

    /// `who` exits through the escape hatch; returns what it received per listed token.
    function _escape(address who) internal returns (uint256[] memory got) {
        address[] memory listed = vault.listedTokens();
        got = new uint256[](listed.length);
        for (uint256 i; i < listed.length; ++i) {
            got[i] = TestToken(listed[i]).balanceOf(who);
        }
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(who);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.prank(who);
        hatch.escape(a, c, l, who);
        for (uint256 i; i < listed.length; ++i) {
            got[i] = TestToken(listed[i]).balanceOf(who) - got[i];
        }
    }

    // ------------------------------------------------------------------ governance

    /// Schedule through the timelock as the governor, wait the delay, execute.
    function _governance(address target, bytes memory data) internal {
        bytes32 salt = bytes32(++_salt);
        vm.prank(governor);
        timelock.schedule(target, 0, data, bytes32(0), salt, TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.prank(governor);
        timelock.execute(target, 0, data, bytes32(0), salt);
    }

    // ------------------------------------------------------------------ state digest

    /// Everything a rejected call must leave untouched.
    function _digest() internal view returns (bytes32) {
        bytes memory acc = abi.encode(
            ch.lastBatchId(),
            ch.lastBatchHash(),
            ch.lastStateRoot(),
            ch.lastCreditedDepositId(),
            ch.lastBatchAt(),
            ch.frozen(),
            vault.depositCount()
        );
        address[] memory listed = vault.listedTokens();
        for (uint256 i; i < listed.length; ++i) {
            address t = listed[i];
            acc = abi.encode(
                acc,
                TestToken(t).balanceOf(address(vault)),
                TestToken(t).balanceOf(address(fund)),
                fund.expectedBalance(t),
                ch.ledger(t),
                ch.executed(t),
                hatch.escapedOut(t),
                vault.totalPendingPayout(t)
            );
        }
        return keccak256(acc);
    }
}
